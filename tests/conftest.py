"""Shared fixtures: small deterministic networks and data on which pruning changes answers."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

# one thread per pytest-xdist worker (the workers share the cores), else up to two
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))

# test modules that read and fill the project's smoke results (results/smoke/): one worker runs them
#: the modules that read the smoke tables the golden test writes under results/smoke/; one
#: group, handed out last, when the golden test (handed out first) is long done and the other
#: worker is finishing, so that JupyterLab and Chromium do not share the cores with two workers
SMOKE_READERS = ("test_browser", "test_explorer", "test_report")
#: the modules that take longest on two workers (measured with --durations), in the order they
#: are handed out (longest first, so that the workers finish together)
SLOWEST_FIRST = ("test_golden", "test_retraining", "test_car", "test_study", "test_screen", "test_heldout",
                 "test_distributed", "test_cli", "test_bench", "test_engine", "test_faults",
                 "test_graph", "test_mobilenet", "test_pruning")


class SmallBNNet(nn.Module):
    """conv -> BN -> ReLU -> pool -> conv -> BN -> ReLU -> conv -> ReLU -> pool -> linear."""

    def __init__(self, classes: int = 7):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
            nn.Conv2d(12, 10, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Linear(10 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine terms (large shifts included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g))
            if isinstance(m, nn.Linear):  # let the input, not the bias, decide the class
                m.bias.zero_()
    return model.eval()


def self_labeled(model: nn.Module, x: torch.Tensor, keep: float = 0.8, seed: int = 0) -> torch.Tensor:
    """Labels equal to the model's own predictions for a share ``keep`` of the images (so the
    base accuracy is high and pruning a filter changes it), random for the rest."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        pred = model(x).argmax(1)
    rand = torch.randint(0, int(pred.max()) + 2, pred.shape, generator=g)
    use = torch.rand(pred.shape, generator=g) < keep
    return torch.where(use, pred, rand)


def prototype_data(n: int, classes: int, size: int, seed: int = 1):
    """Images made of one random prototype per class plus noise, and their labels."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(classes, 3, size, size, generator=g)
    y = torch.arange(n) % classes
    x = protos[y] + 1.5 * torch.randn(n, 3, size, size, generator=g)
    return x, y


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """An empty source folder as ``$CARLIB_DATA_DIR``, a fresh project home, no downloads."""
    src, home = tmp_path / "shared", tmp_path / "home"
    src.mkdir()
    home.mkdir()
    monkeypatch.setenv("CARLIB_DATA_DIR", str(src))
    monkeypatch.setenv("CARLIB_HOME", str(home))
    monkeypatch.setenv("CARLIB_NO_DOWNLOAD", "1")
    return src, home


def uint8_dataset():
    """Twelve random 32x32 uint8 images of three classes (the first one strongly red)."""
    import numpy as np

    from carlib.data import ImageDataset

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    imgs[0, :, :, 0] = 255  # one strongly red image
    return ImageDataset("t", "val", imgs, np.arange(12) % 3, ["a", "b", "c"], ["a", "b", "c"])


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 60, lr: float = 0.05):
    """A few deterministic SGD steps: enough for filters to matter, not for perfection."""
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for i in range(steps):
        idx = torch.arange(i * 16, i * 16 + 16) % x.shape[0]
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def fit_head(model: nn.Module, head: nn.Linear, x: torch.Tensor, y: torch.Tensor,
             steps: int = 5, lr: float = 0.01) -> nn.Module:
    """Fit only the last layer ``head`` on the (fixed) features of random layers: one forward
    pass of the network instead of training it. Underfit on purpose (torchvision AlexNet on
    the prototypes: 79 % correct): with decisions near the boundary, pruning single filters
    changes some of them (most conv1, conv2 and conv5 filters have a nonzero CAR)."""
    torch.manual_seed(0)
    feats = []
    hook = head.register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach()))
    with torch.no_grad():
        model.eval()(x)
    hook.remove()
    f = feats[0]
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(head(f), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def _bn_net():
    torch.manual_seed(0)
    x, y = prototype_data(96, 7, 16)
    model = fit(SmallBNNet(), x, y)
    return model, x, y


@pytest.fixture
def bn_net(_bn_net):
    import copy

    model, x, y = _bn_net
    return copy.deepcopy(model), x, y


@pytest.fixture(scope="session")
def _tv_alexnet(tmp_path_factory):
    """Fitted once per test run (its last layer, on the random layers' features): the first
    pytest-xdist worker saves the weights in the run's shared temporary folder, the others
    load them."""
    from torchvision.models import alexnet

    from carlib.files import file_lock

    x, y = prototype_data(48, 10, 64, seed=2)
    torch.manual_seed(0)
    model = alexnet(num_classes=10, dropout=0.0)
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "tv_alexnet.pt"
    with file_lock(shared):
        if shared.is_file():
            model.load_state_dict(torch.load(shared, weights_only=True))
            return model.eval(), x, y
        model = fit_head(model, model.classifier[6], x, y)
        torch.save(model.state_dict(), shared.with_suffix(".tmp"))
        shared.with_suffix(".tmp").replace(shared)
    return model, x, y


@pytest.fixture
def tv_alexnet(_tv_alexnet):
    """torchvision AlexNet (briefly fitted to prototype images) on small (64x64) inputs."""
    import copy

    model, x, y = _tv_alexnet
    return copy.deepcopy(model), x, y


def _tiny_available() -> bool:
    from carlib.paths import data_search_dirs

    return any((d / "tiny-imagenet-200.zip").is_file() or (d / "tiny-imagenet-200").is_dir()
               for d in data_search_dirs())


requires_tiny = pytest.mark.skipif(not _tiny_available(),
                                   reason="Tiny ImageNet not found (set CARLIB_DATA_DIR)")


@pytest.fixture(scope="session")
def tiny_val_slice():
    """One image per class of Tiny ImageNet val (200 images)."""
    if not _tiny_available():
        pytest.skip("Tiny ImageNet not found (set CARLIB_DATA_DIR)")
    from carlib import load_dataset

    return load_dataset("tiny-imagenet", "val", per_class=1, progress=False)


def _found_in_data_dirs(*names: str) -> bool:
    from carlib.paths import data_search_dirs

    return any((d / n).exists() for d in data_search_dirs() for n in names)


requires_imagenet_sample = pytest.mark.skipif(
    not _found_in_data_dirs("imagenet-val-sample.zip", "imagenet-sample/imagenet/MANIFEST.csv"),
    reason="imagenet-val-sample.zip not found (set CARLIB_DATA_DIR)")
requires_coral = pytest.mark.skipif(
    not _found_in_data_dirs("mobilenet_v2_imagenet1k_coral.pth"),
    reason="mobilenet_v2_imagenet1k_coral.pth not found (set CARLIB_DATA_DIR)")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow (minutes on a 2-core CPU)")
    parser.addoption("--run-faults", action="store_true",
                     help="also run every fault-injection trial (tests marked faults)")


def pytest_collection_modifyitems(config, items):
    skips = {
        "slow": None if config.getoption("--run-slow") else
        pytest.mark.skip(reason="slow (minutes on a 2-core CPU); run with --run-slow"),
        "faults": None if config.getoption("--run-faults") else
        pytest.mark.skip(reason="every fault trial; run with --run-faults (make test-faults)"),
    }
    # slowest first, so that two workers finish together (make test keeps this order with
    # --no-loadscope-reorder); the golden test fills results/smoke/ first, its readers come last
    rank = {m: i for i, m in enumerate(SLOWEST_FIRST)}
    rank.update({m: len(rank) + 1 + i for i, m in enumerate(SMOKE_READERS)})
    items.sort(key=lambda item: rank.get(item.path.stem, len(SLOWEST_FIRST)))
    for item in items:
        # under `pytest -n N --dist loadgroup` (make test) a module's tests (and doctests) stay on
        # one worker (module fixtures are built once), and the smoke readers on the same one
        module = item.path.stem
        item.add_marker(pytest.mark.xdist_group("smoke-readers" if module in SMOKE_READERS
                                                 else f"{item.path.parent.name}/{module}"))
        for marker, skip in skips.items():
            if skip is not None and item.get_closest_marker(marker) is not None:
                item.add_marker(skip)


def mini_cli_world(tmp) -> tuple:
    """A miniature Tiny ImageNet (3 classes, 8 val images each) as ``$CARLIB_DATA_DIR``, an empty
    project home, and ``alexnet-tiny`` weights that predict only those classes (so pruning a
    filter changes answers). Returns ``(weights, env)``: the checkpoint and the environment."""
    from carlib import AlexNetTiny
    from test_data import make_tiny

    src, home = tmp / "shared", tmp / "home"
    src.mkdir()
    home.mkdir()
    make_tiny(src, train_per_class=1, val_per_class=8)
    torch.manual_seed(0)
    model = AlexNetTiny()
    with torch.no_grad():  # predict the data's three classes only, each for some images
        model.classifier[-1].bias.zero_()
        model.classifier[-1].bias[3:] = -1e4
        model.classifier[-1].weight[:3] *= 50
    weights = tmp / "w.pt"
    torch.save(model.state_dict(), weights)
    return weights, {"CARLIB_DATA_DIR": str(src), "CARLIB_HOME": str(home), "CARLIB_NO_DOWNLOAD": "1"}


def run_cli(env: dict, *argvs: list) -> None:
    """Run ``python -m carlib`` in-process on each argument list with ``env`` set; each must
    succeed (exit 0)."""
    from carlib.cli import main

    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        for argv in argvs:
            assert main(argv) == 0, argv


def folder_copy(ds, folder):
    """The images of an in-memory dataset saved as PNG files and read back as a
    :class:`~carlib.data.FolderDataset` (the way ImageNet is read)."""
    from PIL import Image
    from torchvision import transforms

    from carlib.data import FolderDataset

    samples = []
    for i, (img, y) in enumerate(zip(ds.images, ds.labels)):
        Image.fromarray(img).save(folder / f"{i}.png")
        samples.append((str(folder / f"{i}.png"), int(y)))
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(ds.mean, ds.std)])
    return FolderDataset("t", "val", samples, ds.classes, ds.class_names, tf)


class TinyNet(nn.Module):
    """conv(3->6, 3x3) -> ReLU -> pool -> conv(6->8) -> ReLU -> global pool -> dropout -> linear."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(8, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def prototype_images(n: int = 64, classes: int = 4, size: int = 12, seed: int = 0):
    """An in-memory uint8 dataset: one random prototype per class plus noise (learnable in a few steps)."""
    import numpy as np

    from carlib.data import ImageDataset

    g = np.random.default_rng(seed)
    protos = g.integers(40, 216, (classes, size, size, 3))
    y = np.arange(n) % classes
    imgs = np.clip(protos[y] + g.normal(0, 30, (n, size, size, 3)), 0, 255).astype(np.uint8)
    names = [f"c{i}" for i in range(classes)]
    return ImageDataset("t", "train", imgs, y, names, names)
