"""carlib.compression: magnitude pruning, weight sharing, their training, and the bits counted."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from carlib.compression import (SharedWeights, compression_row, deep_compress, kmeans_1d,
                                magnitude_mask, materialize, prune_weights, share_weights)
from carlib.errors import CarlibError
from carlib.finetune import finetune, finetune_config
from conftest import TinyNet, prototype_images


def _spiky_conv() -> nn.Conv2d:
    """A conv (2 filters of 3x10x10 = 600 weights) whose four large weights sit at flat
    positions 0, 3, 300 and 599: distances 1, 3, 297 and 299 from the previous entry."""
    conv = nn.Conv2d(3, 2, 10)
    with torch.no_grad():
        w = torch.full((600,), 0.01)
        w[[0, 3, 300, 599]] = torch.tensor([1.0, -1.0, 2.0, -2.0])
        conv.weight.copy_(w.view(2, 3, 10, 10))
    return conv


def test_compression_row_of_a_pruned_and_shared_layer_is_counted_exactly():
    model = nn.Sequential(_spiky_conv())
    pruned = prune_weights(model, "conv1", 596 / 600)
    assert torch.equal(torch.nonzero(pruned[0].weight.flatten()).flatten(), torch.tensor([0, 3, 300, 599]))
    shared = share_weights(pruned, "conv1", bits=2)
    w = shared[0].weight.detach().flatten()
    # fillers are needed, so one of the 4 codes is the zero and k-means fits 3 values
    assert len(shared[0].parametrizations.weight.original) == 3
    # k-means from -2, 0, 2: -2 and -1 (a tie at the midpoint goes to the lower centroid) share -1.5
    assert w[[0, 3, 300, 599]].tolist() == [1.0, -1.5, 2.0, -1.5]
    row = compression_row(shared, "conv1", original=(4, 3, 10, 10))
    assert (row["filters_kept"], row["filters_original"], row["shape"]) == (2, 4, "2x3x10x10")
    assert (row["nonzero"], row["entries"], row["bits"], row["index_bits"]) == (4, 6, 2, 8)
    assert row["total_bits"] == 6 * (2 + 8) + 4 * 32 + 2 * 32
    assert row["original_bits"] == (4 * 3 * 10 * 10 + 4) * 32
    assert row["factor"] == row["original_bits"] / row["total_bits"]
    assert model[0].weight.abs().min() > 0  # the input network is untouched


def test_an_unpruned_fp32_layer_has_factor_one():
    torch.manual_seed(0)
    row = compression_row(TinyNet(), "conv2")
    assert row["factor"] == 1.0 and row["format"] == "dense" and row["sparsity"] == 0.0
    assert row["total_bits"] == (8 * 6 * 9 + 8) * 32


def test_magnitude_pruning_and_sharing_leave_at_most_2_to_the_b_values():
    torch.manual_seed(0)
    net = TinyNet()
    pruned = prune_weights(net, "conv2", 0.5)
    w = pruned.features[3].weight.detach()
    kept = net.features[3].weight.detach().abs()[w != 0]
    assert (w == 0).sum() == 216 and kept.min() >= net.features[3].weight.detach().abs()[w == 0].max()
    for bits in (1, 3, 5):
        shared = share_weights(pruned, "conv2", bits=bits)
        v = shared.features[3].weight.detach()
        assert torch.equal(v == 0, w == 0)  # pruned stay 0, survivors are non-zero here
        assert len(torch.unique(v[v != 0])) <= 2 ** bits
    # each survivor became its nearest centroid
    p = shared.features[3].parametrizations.weight[0]
    code = shared.features[3].parametrizations.weight.original.detach()
    assert torch.equal((w[w != 0][:, None] - code[None]).abs().argmin(1), p.index[w != 0])


def test_kmeans_is_lloyd_from_a_linear_start():
    c, a = kmeans_1d(torch.tensor([0.0, 1.0, 2.0, 9.0, 10.0]), 3)  # start 0, 5, 10
    assert c.tolist() == [1.0, 5.0, 9.5] and a.tolist() == [0, 0, 0, 2, 2]  # 5 lost its values
    # start 0, 10: 5.2 goes up (2.4, 9.2), then down (3.33, 10)
    c, a = kmeans_1d(torch.tensor([0.0, 4.8, 5.2] + [10.0] * 5), 2)
    assert c.tolist() == pytest.approx([10 / 3, 10.0]) and a.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]


def test_the_gradient_of_a_shared_value_is_the_sum_of_its_weights_gradients():
    torch.manual_seed(0)
    net = share_weights(prune_weights(TinyNet(), "conv1", 0.3), "conv1", bits=3).eval()
    x = torch.randn(4, 3, 12, 12)
    net(x).square().sum().backward()
    plain = materialize(net)
    plain(x).square().sum().backward()
    p = net.features[0].parametrizations.weight[0]
    g = plain.features[0].weight.grad[p.mask]
    want = torch.zeros(7).index_add_(0, p.index[p.mask], g)  # 2**3 codes, one of them the zero
    torch.testing.assert_close(net.features[0].parametrizations.weight.original.grad, want)


def test_masked_finetuning_keeps_zeros_zero_and_shared_weights_shared(tmp_path):
    torch.manual_seed(0)
    data = prototype_images()
    net = share_weights(prune_weights(TinyNet(), "conv2", 0.6), "conv2", bits=2)
    net = prune_weights(net, "conv1", 0.5)
    before = [net.features[i].weight.detach().clone() for i in (0, 3)]
    tuned, log = finetune(net, data, config=finetune_config(4, lr=0.05, batch_size=16, threads=1),
                          work_dir=tmp_path, progress=False)
    assert log["train_loss"].iloc[-1] < log["train_loss"].iloc[0]
    for i, old in zip((0, 3), before):
        new = tuned.features[i].weight.detach()
        assert torch.equal(new == 0, old == 0) and not torch.equal(new, old)
    p = tuned.features[3].parametrizations.weight[0]
    code = tuned.features[3].parametrizations.weight.original.detach()
    new = tuned.features[3].weight.detach()
    assert torch.equal(new[p.mask], code[p.index[p.mask]]) and len(torch.unique(new[new != 0])) <= 4
    assert not torch.equal(code, p.initial)  # the codebook was trained
    row = compression_row(tuned, "conv2")
    assert row["bits"] == 2 and row["factor"] > 1


@pytest.mark.parametrize("call,words", [
    (lambda n: prune_weights(n, "conv1", 1.0), "sparsity must be a number in [0, 1)"),
    (lambda n: prune_weights(n, "conv1", -0.1), "sparsity must be a number in [0, 1)"),
    (lambda n: prune_weights(n, "conv1", "0.5"), "sparsity must be a number in [0, 1)"),
    (lambda n: prune_weights(n, "conv9", 0.5), "conv9"),
    (lambda n: prune_weights(prune_weights(n, "conv1", 0.5), "conv1", 0.2), "at least that much"),
    (lambda n: share_weights(n, "conv1", bits=0), "bits must be an integer from 1 to 16"),
    (lambda n: share_weights(n, "conv1", bits=2.5), "bits must be an integer from 1 to 16"),
    (lambda n: share_weights(n, "conv1", index_bits=0), "index_bits must be an integer"),
    (lambda n: share_weights(share_weights(n, "conv1"), "conv1"), "already shared"),
    (lambda n: prune_weights(share_weights(n, "conv1"), "conv1", 0.5), "already shared"),
    (lambda n: compression_row(n, "conv1", original=(6, 3, 3)), "original must be"),
    (lambda n: finetune_config(0), "epochs must be an integer of at least 1"),
    (lambda n: finetune_config(1, lr=-1.0), "lr must be a positive number"),
])
def test_bad_input_is_one_line(call, words):
    with pytest.raises(CarlibError) as err:
        call(TinyNet())
    assert words in str(err.value) and "\n" not in str(err.value)


def test_shared_weights_parametrization_round_trips_through_a_state_dict():
    torch.manual_seed(0)
    net = share_weights(prune_weights(TinyNet(), "conv1", 0.5), "conv1", bits=3)
    other = share_weights(prune_weights(TinyNet(), "conv1", 0.5), "conv1", bits=3)
    other.load_state_dict(net.state_dict())
    assert torch.equal(other.features[0].weight, net.features[0].weight)
    assert isinstance(other.features[0].parametrizations.weight[0], SharedWeights)
    assert magnitude_mask(torch.tensor([1.0, 1.0, 1.0, 1.0]), 0.5).tolist() == [False, False, True, True]


def test_deep_compress_runs_the_pipeline_and_resumes(tmp_path, capsys):
    torch.manual_seed(0)
    data, start = prototype_images(), TinyNet()
    cfg = finetune_config(1, lr=0.05, batch_size=8, threads=1)
    net, row = deep_compress(start, "conv2", data, sparsity=0.5, bits=2, config=cfg,
                             work_dir=tmp_path, original=(16, 6, 3, 3), progress=False)
    assert (row["bits"], row["nonzero"], row["filters_original"]) == (2, 216, 16)
    assert sorted(p.name for p in tmp_path.glob("*.log.csv")) == ["conv2-s0.5-b2-pruned.log.csv",
                                                                 "conv2-s0.5-b2-shared.log.csv"]
    again, _ = deep_compress(start, "conv2", data, sparsity=0.5, bits=2, config=cfg,
                             work_dir=tmp_path, original=(16, 6, 3, 3), progress=False)
    assert capsys.readouterr().err.count("resuming from epoch 1") == 2
    assert torch.equal(again.features[3].weight, net.features[3].weight)
    untuned, same = deep_compress(start, "conv2", None, sparsity=0.5, bits=2, work_dir=tmp_path,
                                  original=(16, 6, 3, 3))
    assert {k: v for k, v in same.items() if "huffman" not in k} == {  # code frequencies differ
        k: v for k, v in row.items() if "huffman" not in k}
    assert not torch.equal(untuned.features[3].weight, net.features[3].weight)
