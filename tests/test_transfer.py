"""Frozen backbones, weights handling, the input adapter, and the two backbone modes of the transfer trainable."""
from __future__ import annotations

import math
import platform

import pytest
import torch
import torchvision
from torch import nn

from trainables import backbones, transfer
from trainables.backbones import ImageNetInput, TransferNet, compute_features, feature_settings, find_head, load_backbone
from trainables.weights import WeightsError, ensure_weights
from trainables.config import ConfigError
from trainables.data import MNIST_MEAN, MNIST_STD
from trainables.loop import MemoryReporter, fit
from trainables.transfer import TransferConfig, feature_jobs, feature_requests, prepare_features, train_transfer

OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}


@pytest.mark.parametrize("name, head, dim", [("resnet50", "fc", 2048), ("vgg19", "classifier.6", 4096),
                                             ("efficientnet_b0", "classifier.1", 1280)])
def test_head_found_generically_and_everything_frozen(name, head, dim):
    assert find_head(torchvision.models.get_model(name))[0] == head
    features, in_features = load_backbone(name, "none")
    assert in_features == dim
    assert isinstance(features.get_submodule(head), nn.Identity)
    assert not any(p.requires_grad for p in features.parameters())


def test_model_without_linear_head_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot find the classification head of SqueezeNet"):
        load_backbone("squeezenet1_0", "none")
    with pytest.raises(ConfigError, match="'model' = 'resnet5' is not a torchvision classification model; did "
                                          "you mean resnet50, resnet152 or resnet34[?]"):
        TransferConfig.from_dict({"model": "resnet5"})
    with pytest.raises(ConfigError, match="'VGG19' is not a torchvision classification model; did you mean vgg19, "):
        TransferConfig.from_dict({"model": "VGG19"})
    with pytest.raises(ConfigError, match="'model' = 'xyz' is not a torchvision classification model; e.g. resnet50"):
        TransferConfig.from_dict({"model": "xyz"})


def test_weights_none_is_one_fixed_backbone_and_path_loads_a_state_dict(tmp_path):
    a, _ = load_backbone("resnet18", "none")
    b, _ = load_backbone("resnet18", "none")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    torch.manual_seed(5)
    donor = torchvision.models.get_model("resnet18")
    torch.save(donor.state_dict(), tmp_path / "w.pt")
    ensure_weights("resnet18", str(tmp_path / "w.pt"))
    loaded, _ = load_backbone("resnet18", str(tmp_path / "w.pt"))
    torch.testing.assert_close(loaded.conv1.weight, donor.conv1.weight)
    with pytest.raises(WeightsError, match="no such file. Use 'imagenet', 'none'"):
        ensure_weights("resnet18", str(tmp_path / "missing.pt"))


def test_imagenet_weights_offline_name_the_file_and_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache
    for k, v in OFFLINE.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(WeightsError) as err:
        ensure_weights("vgg19", "imagenet")
    msg = str(err.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in msg
    assert "--weights none" in msg and "--weights PATH" in msg


def test_input_adapter_gives_imagenet_normalized_rgb():
    x = torch.full((2, 1, 28, 28), (0 - MNIST_MEAN) / MNIST_STD)  # MNIST background
    x[:, :, 14, 14] = (1 - MNIST_MEAN) / MNIST_STD
    out = ImageNetInput(56)(x)
    assert out.shape == (2, 3, 56, 56)
    expected_bg = torch.tensor([(0 - m) / s for m, s in zip(backbones.IMAGENET_MEAN, backbones.IMAGENET_STD)])
    torch.testing.assert_close(out[0, :, 0, 0], expected_bg)
    # the three channels carry the same gray image, back in [0, 1] with the digit's ink at 1
    gray = out * torch.tensor(backbones.IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(
        backbones.IMAGENET_MEAN).view(1, 3, 1, 1)
    torch.testing.assert_close(gray[:, 0], gray[:, 2])
    assert gray.min() >= -1e-6 and gray.max() <= 1 + 1e-6 and gray[0, 0, 28, 28] > 0.1


def test_new_head_has_pytorch_default_init_bounds(mnist):
    cfg = TransferConfig(model="resnet18", weights="none", image_size=32, epochs=1, test_limit=50)
    feats = prepare_features(mnist, [cfg])
    states = KeepState()
    train_transfer({**cfg.to_dict(), "lr": 1e-12}, mnist, feats, states)  # lr ~ 0: the init survives
    w = states.first["model"]["weight"]
    bound = 1 / math.sqrt(512)
    assert w.shape == (10, 512) and w.abs().max() <= bound and w.abs().max() > 0.9 * bound


class KeepState(MemoryReporter):
    def __init__(self):
        super().__init__()
        self.first = self.last = None

    def report(self, metrics, state, arrays=None):
        super().report(metrics, state, arrays)
        self.first = self.first or state
        self.last = state


def test_cached_and_uncached_eval_backbone_train_the_same_head(mnist):
    cfg = TransferConfig(model="resnet18", weights="none", image_size=32, train_per_class=3, test_limit=40,
                         epochs=1, seed=4, batch_size=4)
    cached = KeepState()
    train_transfer(cfg.to_dict(), mnist, prepare_features(mnist, [cfg]), cached)

    # The same trial without the cache: the whole network runs every batch, backbone held in eval mode.
    from trainables.data import stratified_subset
    idx = stratified_subset(mnist.train_labels, 3, 4)
    backbone, dim = load_backbone("resnet18", "none")
    torch.manual_seed(4)
    head = nn.Linear(dim, 10)
    net = TransferNet(backbone, head, 32, backbone_train=False)
    opt = torch.optim.SGD(head.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    uncached = KeepState()
    fit(net, opt, None, train=(mnist.train_images[idx], mnist.train_labels[idx]),
        tests={"test": (mnist.test_images[:40], mnist.test_labels[:40])}, epochs=1, batch_size=4, seed=4,
        device=torch.device("cpu"), reporter=uncached)
    torch.testing.assert_close(cached.last["model"]["weight"], uncached.last["model"]["head.weight"],
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached.last["model"]["bias"], uncached.last["model"]["head.bias"],
                               rtol=1e-4, atol=1e-5)
    assert cached.rows[0]["test_acc"] == pytest.approx(uncached.rows[0]["test_acc"])


def test_forward_counts_per_mode(mnist):
    cfgs = [TransferConfig(model="resnet18", weights="none", image_size=32, train_per_class=n, seed=s,
                           test_limit=30, epochs=2, val_per_class=3) for n in (2, 4) for s in (0, 1)]
    jobs = feature_jobs(mnist, cfgs)
    (train_index, n_test), = jobs.values()
    # the union of the subsets (nested per seed) and of each seed's validation split (one per seed, all sizes)
    assert n_test == 30 and len(train_index) <= 2 * (40 + 30)
    backbones.FORWARD_IMAGES.clear()
    feats = prepare_features(mnist, cfgs)
    assert backbones.FORWARD_IMAGES["resnet18"] == len(train_index) + 30  # each unique image once
    for cfg in cfgs:
        train_transfer(cfg.to_dict(), mnist, feats, MemoryReporter())
    assert backbones.FORWARD_IMAGES["resnet18"] == len(train_index) + 30  # training never runs the backbone

    backbones.FORWARD_IMAGES.clear()
    tutorial = {**cfgs[0].to_dict(), "backbone_mode": "tutorial"}
    rep = KeepState()
    train_transfer(tutorial, mnist, None, rep)
    assert backbones.FORWARD_IMAGES["resnet18"] == 2 * (20 + 30 + 30)  # every epoch: training, val and test
    # Tutorial mode keeps the backbone in train mode: BatchNorm running statistics drift and are checkpointed.
    assert rep.last["model"]["features.bn1.running_mean"].abs().sum() > 0


def test_bf16_and_batch_256_are_chosen_only_on_cuda_and_channels_last_on_cuda_and_x86_from_64_px():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)  # a device object needs no GPU
    assert feature_settings(cpu) == feature_settings("cpu", "fp32") == (torch.float32, 64, False)
    assert feature_settings(cuda) == feature_settings("cuda", "bf16") == (torch.bfloat16, 256, True)
    assert feature_settings(cuda, "fp32") == (torch.float32, 256, True)
    assert feature_settings(cpu, "bf16") == (torch.bfloat16, 64, False)  # asked for by name: honoured
    # the layout on a CPU: channels_last on x86 from 64 px (where oneDNN is faster with it), NCHW below
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert backbones.CPU_CHANNELS_LAST == x86
    assert [feature_settings(cpu, "fp32", px)[2] for px in (32, 63, 64, 224)] == [False, False, x86, x86]
    assert feature_settings(cpu, "bf16", 224) == (torch.bfloat16, 64, x86)
    assert feature_settings(cuda, "auto", 32) == (torch.bfloat16, 256, True)
    with pytest.raises(ValueError, match="feature_dtype 'fp16'"):
        feature_settings(cpu, "fp16")
    with pytest.raises(ConfigError, match="'feature_dtype' = 'fp16' is not allowed"):
        TransferConfig.from_dict({"feature_dtype": "fp16"})


def test_feature_cache_key_holds_the_resolved_dtype(mnist):
    auto = TransferConfig(model="resnet18", weights="none", image_size=32, train_per_class=2, test_limit=10)
    fp32 = TransferConfig.from_dict({**auto.to_dict(), "feature_dtype": "fp32"})
    assert auto.cache_key("cuda") == "resnet18|none|32|bf16" and auto.cache_key("cpu") == "resnet18|none|32|fp32"
    assert fp32.cache_key("cuda") == fp32.cache_key("cpu") == "resnet18|none|32|fp32"
    # on CUDA the two configs need different features; on CPU one pass serves both
    assert set(feature_jobs(mnist, [auto, fp32], "cuda")) == {"resnet18|none|32|bf16", "resnet18|none|32|fp32"}
    assert set(feature_jobs(mnist, [auto, fp32], "cpu")) == {"resnet18|none|32|fp32"}
    assert feature_requests([auto, fp32], "cuda") == {"resnet18|none|32|auto": "resnet18|none|32|bf16",
                                                      "resnet18|none|32|fp32": "resnet18|none|32|fp32"}
    feats = prepare_features(mnist, [auto, fp32], torch.device("cpu"))
    assert feats[auto.feature_key] is feats[fp32.feature_key]


def test_cpu_feature_pass_is_unchanged(mnist):
    """On CPU (auto or fp32) the features are bit for bit what the feature pass always computed: eval mode,
    NCHW, fp32, batches of 64."""
    def net():
        return TransferNet(load_backbone("resnet18", "none")[0], nn.Identity(), 32, backbone_train=False)

    images = mnist.train_images[:150]  # two whole batches of 64 and a partial one
    with torch.inference_mode():
        ref = net().eval()
        before = torch.cat([ref.features(ref.adapter(images[i:i + 64])) for i in range(0, len(images), 64)])
    for feature_dtype in ("auto", "fp32"):
        after = compute_features(net(), images, device=torch.device("cpu"), feature_dtype=feature_dtype)
        assert after.dtype == torch.float32 and torch.equal(after, before)

    cfg = TransferConfig(model="resnet18", weights="none", image_size=32, train_per_class=3, test_limit=20)
    (idx, n_test), = feature_jobs(mnist, [cfg], "cpu").values()
    fs = prepare_features(mnist, [cfg], torch.device("cpu"))[cfg.feature_key]
    images = torch.cat([mnist.train_images[idx], mnist.test_images[:n_test]])
    with torch.inference_mode():
        before = torch.cat([ref.features(ref.adapter(images[i:i + 64])) for i in range(0, len(images), 64)])
    assert torch.equal(torch.cat([fs.train, fs.test]), before)


def test_cpu_feature_pass_from_64_px_is_channels_last_on_x86_and_the_nchw_features_to_rounding(mnist):
    """From 64 px an x86 CPU computes the fp32 features in channels_last: bit for bit that computation, and the
    NCHW pass's features (what it computed before) to float32 rounding."""
    def net():
        return TransferNet(load_backbone("resnet18", "none")[0], nn.Identity(), 64, backbone_train=False)

    def reference(layout: torch.memory_format) -> torch.Tensor:
        ref = net().eval()
        ref.features.to(memory_format=layout)
        with torch.inference_mode():
            return torch.cat([ref.features(ref.adapter(images[i:i + 64]).contiguous(memory_format=layout))
                              for i in range(0, len(images), 64)])

    images = mnist.train_images[:80]  # a whole batch of 64 and a partial one
    nchw = reference(torch.contiguous_format)
    exact = reference(torch.channels_last if backbones.CPU_CHANNELS_LAST else torch.contiguous_format)
    for feature_dtype in ("auto", "fp32"):
        after = compute_features(net(), images, device=torch.device("cpu"), feature_dtype=feature_dtype)
        assert after.dtype == torch.float32 and torch.equal(after, exact)
        assert ((after - nchw).norm() / nchw.norm()).item() < 1e-5
    if backbones.CPU_CHANNELS_LAST:
        assert not torch.equal(exact, nchw)  # the layout did change how they were computed


def test_bf16_path_runs_channels_last_under_autocast_and_returns_float32(mnist):
    """What CUDA gets, run on CPU: channels_last input, bf16 convolutions, float32 features for the head."""
    backbone, _ = load_backbone("resnet18", "none")
    net = TransferNet(backbone, nn.Identity(), 32, backbone_train=False, compute_dtype=torch.bfloat16,
                      channels_last=True).eval()
    images = mnist.train_images[:8]
    with torch.inference_mode():
        fp32 = backbone(net.adapter(images))
    seen = []
    backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous(
        memory_format=torch.channels_last)))
    backbone.conv1.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    with torch.inference_mode():
        out = net.embed(images)
    assert seen == [True, torch.bfloat16] and out.dtype == torch.float32
    assert (out - fp32).norm() / fp32.norm() < 0.05  # bf16 rounding, not a different network

    feats = compute_features(TransferNet(load_backbone("resnet18", "none")[0], nn.Identity(), 32, False),
                             images, device=torch.device("cpu"), feature_dtype="bf16")
    assert feats.dtype == torch.float32 and (feats - fp32).norm() / fp32.norm() < 0.05


@pytest.mark.parametrize("image_size", [32, 64])
def test_tutorial_mode_on_cpu_runs_the_backbone_in_fp32_and_the_cpu_layout(mnist, monkeypatch, image_size):
    built = []

    class Recorded(TransferNet):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(transfer, "TransferNet", Recorded)
    cfg = TransferConfig(model="resnet18", weights="none", image_size=image_size, train_per_class=1, test_limit=10,
                         epochs=1, backbone_mode="tutorial")
    train_transfer(cfg.to_dict(), mnist, None, MemoryReporter())
    channels_last = backbones.CPU_CHANNELS_LAST and image_size >= 64
    assert [(n.compute_dtype, n.channels_last) for n in built] == [(torch.float32, channels_last)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_feature_pass_returns_every_batch_in_order():
    torch.manual_seed(0)
    net = TransferNet(load_backbone("resnet18", "none")[0], nn.Identity(), 32, False)
    images = torch.randn(600, 1, 28, 28)  # batches of 256, 256 and 88
    got = list(backbones.embed_batches(net, images, device=torch.device("cuda"), feature_dtype="fp32"))
    assert [len(b) for b in got] == [256, 256, 88] and all(b.device.type == "cpu" for b in got)
    with torch.inference_mode():
        plain = torch.cat([net.embed(images[i:i + 256].cuda()).float().cpu() for i in range(0, 600, 256)])
    assert torch.allclose(torch.cat(got), plain, rtol=1e-4, atol=1e-5)
