"""carlib.mobilenet: ``mobilenet_v2-coral`` takes carlib's normalized input, pads like
TensorFlow, keeps torchvision's module paths, reproduces its accuracy, and CAR runs on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import carlib
import carlib.mobilenet as M
from carlib import car_index, car_index_naive, load_dataset, load_model
from carlib.convs import SamePadConv2d
from carlib.data import IMAGENET_MEAN, IMAGENET_STD, as_batches
from carlib.errors import CheckpointError, DataNotFoundError
from carlib.files import sha256_file
from carlib.graph import analyze

from conftest import requires_coral, requires_imagenet_sample

#: every 28th image of imagenet-sample (50 images, the dataset's order)
SUBSET = list(range(0, 1398, 28))
#: top-1 / top-5 correct of mobilenet_v2-coral on SUBSET, measured once (the smallest gap
#: between the two largest logits there is 0.02, so float rounding cannot change them);
#: 37/50 = 74 % is within the binomial spread of the full sample's 78.0 % (Wilson 95 %
#: interval of 37/50: 60.5-84.1 %)
SUBSET_TOP1, SUBSET_TOP5 = 37, 48
STRIDED = ["features.0.0", "features.2.conv.1.0", "features.4.conv.1.0", "features.7.conv.1.0",
           "features.14.conv.1.0"]


@pytest.fixture(scope="module")
def coral():
    return load_model("mobilenet_v2-coral")


@pytest.fixture(scope="module")
def subset():
    """The 50 SUBSET images as normalized tensors and as 0-255 pixels, with labels."""
    from PIL import Image
    from torchvision import transforms

    ds = load_dataset("imagenet-sample", "val", progress=False).subset(SUBSET)
    x, y = next(as_batches(ds, len(ds)))
    crop = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    pixels = []
    for path, _ in ds.samples[:4]:
        with Image.open(path) as im:
            pixels.append(torch.from_numpy(np.array(crop(im.convert("RGB")))).permute(2, 0, 1))
    return x, y, torch.stack(pixels).float()


def torchvision_reference(tf_padding: bool) -> nn.Module:
    """torchvision's own MobileNetV2 with the file's weights, fed ``p / 128 - 1``; with
    ``tf_padding`` its strided 3x3 convolutions pad (0, 1, 0, 1) instead of 1 on every side."""
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2()
    model.load_state_dict(torch.load(M.find_mobilenet_v2_coral(), weights_only=True), strict=True)
    if tf_padding:
        for name in STRIDED:
            conv = model.get_submodule(name)
            conv.padding = (0, 0)
            conv.register_forward_pre_hook(lambda m, a: (F.pad(a[0], (0, 1, 0, 1)),))
    return model.eval()


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels / 255 - mean) / std


def test_structure_keeps_torchvision_paths_and_state_dict():
    from torchvision.models import mobilenet_v2

    m = M.CoralMobileNetV2().eval()
    assert list(m.state_dict()) == list(mobilenet_v2().state_dict())  # no extra keys
    same = [n for n, mod in m.named_modules() if isinstance(mod, SamePadConv2d)]
    assert same == STRIDED
    layers = carlib.layer_table(m)
    assert layers["path"].tolist()[:2] == ["features.0.0", "features.1.conv.0.0"]
    assert layers["alias"].tolist()[0] == "conv1" and len(layers) == 52
    plan = analyze(m, "conv1")
    assert plan.mask_module == "features.0.2" and plan.fast  # a depthwise consumer
    assert "grouped" in plan.prune_reason
    conv1 = next(n for n in plan.gm.graph.nodes if n.op == "call_module")
    assert conv1.target == "features.0.0"
    rescale = conv1.args[0]  # the input rescale runs before conv1, in the traced graph too
    assert rescale.target is torch.addcmul and rescale.args[1].op == "placeholder"


def test_weights_are_looked_up_checked_and_loaded_strictly(homes, monkeypatch):
    src, home = homes
    with pytest.raises(DataNotFoundError) as err:
        load_model("mobilenet_v2-coral")
    msg = str(err.value)
    assert "mobilenet_v2_imagenet1k_coral.pth" in msg and str(home / "data") in msg
    assert "CARLIB_DATA_DIR" in msg and "\n" not in msg
    fake = src / M.MOBILENET_V2_CORAL_FILE
    torch.manual_seed(0)
    torch.save(M.CoralMobileNetV2().state_dict(), fake)
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        load_model("mobilenet_v2-coral")
    monkeypatch.setattr(M, "MOBILENET_V2_CORAL_SHA256", sha256_file(fake))
    m = load_model("mobilenet_v2-coral")
    assert isinstance(m, M.CoralMobileNetV2) and not m.training
    torch.save({k: v for k, v in M.CoralMobileNetV2().state_dict().items() if "classifier" not in k}, fake)
    monkeypatch.setattr(M, "MOBILENET_V2_CORAL_SHA256", sha256_file(fake))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model("mobilenet_v2-coral")
    (home / "data").mkdir()
    fake.rename(home / "data" / M.MOBILENET_V2_CORAL_FILE)  # data/ is searched too
    assert M.find_mobilenet_v2_coral() == home / "data" / M.MOBILENET_V2_CORAL_FILE


def test_torchvision_mobilenet_v2_still_loads_through_the_weights_api(tmp_path, monkeypatch):
    from torchvision.models import MobileNet_V2_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fname = MobileNet_V2_Weights.DEFAULT.url.rsplit("/", 1)[1]
    with pytest.raises(DataNotFoundError) as err:
        load_model("mobilenet_v2")
    assert fname in str(err.value) and str(tmp_path / "torch" / "hub" / "checkpoints") in str(err.value)


def test_input_rescale_is_exact():
    r = M.InputRescale()
    pixels = torch.arange(256, dtype=torch.float32).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    torch.testing.assert_close(r(normalize(pixels)), pixels / 128 - 1, rtol=0, atol=1e-6)
    assert dict(r.state_dict()) == {}


@requires_coral
@requires_imagenet_sample
def test_normalized_input_gives_the_logits_of_torchvision_fed_tf_scaled_pixels(coral, subset):
    _, _, pixels = subset
    with torch.no_grad():
        ours = coral(normalize(pixels))
        ref = torchvision_reference(tf_padding=True)(pixels / 128 - 1)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    assert torch.equal(ours.argmax(1), ref.argmax(1))


@requires_coral
@requires_imagenet_sample
def test_tf_padding_matters(coral, subset):
    _, _, pixels = subset
    with torch.no_grad():
        tf = coral(normalize(pixels))
        sym = torchvision_reference(tf_padding=False)(pixels / 128 - 1)
    assert (tf - sym).abs().max() > 1.0  # not float rounding: another function


@requires_coral
@requires_imagenet_sample
def test_accuracy_on_a_fixed_subset(coral, subset):
    x, y, _ = subset
    with torch.no_grad():
        logits = coral(x)
    assert int((logits.argmax(1) == y).sum()) == SUBSET_TOP1
    assert int((logits.topk(5, 1).indices == y[:, None]).any(1).sum()) == SUBSET_TOP5


@pytest.mark.slow
@requires_coral
@requires_imagenet_sample
def test_accuracy_on_the_whole_sample(coral):
    data = load_dataset("imagenet-sample", "val", progress=False)
    correct = n = 0
    with torch.no_grad():
        for x, y in as_batches(data, 64):
            correct += int((coral(x).argmax(1) == y).sum())
            n += len(y)
    assert n == 1398 and 0.775 <= correct / n <= 0.785


@requires_coral
@requires_imagenet_sample
def test_car_index_matches_naive(coral, subset):
    x, y, _ = subset
    x, y = x[:4], y[:4]
    filters = [2, 24]  # on these images: filter 24 costs 3 of the 3 correct, filter 2 none
    ours = car_index(coral, "conv1", (x, y), filters=filters, per_class=True, progress=False,
                     batch_size=4)
    assert ours.attrs["method"] == "fast"  # its depthwise consumer, then any graph
    naive = car_index_naive(coral, "conv1", (x, y), filters=filters, per_class=True, batch_size=4)
    assert ours.attrs["base_accuracy"] == naive.attrs["base_accuracy"] == 0.75
    np.testing.assert_array_equal(ours.to_numpy(), naive.to_numpy())
    overall = ours.groupby("filter").apply(lambda d: (d["car"] * d["n"]).sum() / d["n"].sum())
    assert overall.tolist() == [0.0, 0.75]
