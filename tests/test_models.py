"""The affine STN: the tutorial's layer shapes, logits shape, identity warp at initialization."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.models import AffineTransformer, build_stn


def test_logits_shape_and_gradients():
    torch.manual_seed(0)
    model = build_stn("affine")
    x = torch.randn(5, 1, 28, 28)
    out = model(x)
    assert out.shape == (5, 10)
    out.sum().backward()
    assert model.transformer.fc_loc[0].weight.grad is not None  # the localization net is trained end to end


def test_tutorial_architecture():
    model = build_stn("affine")
    loc = [m for m in model.transformer.localization if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in loc] == [(1, 8, (7, 7)), (8, 10, (5, 5))]
    fc = [m for m in model.transformer.fc_loc if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fc] == [(90, 32), (32, 6)]
    c = model.classifier
    assert (c.conv1.in_channels, c.conv1.out_channels, c.conv2.out_channels) == (1, 10, 20)
    assert isinstance(c.conv2_drop, nn.Dropout2d)
    assert (c.fc1.in_features, c.fc1.out_features, c.fc2.out_features) == (320, 50, 10)


def test_identity_at_init():
    torch.manual_seed(1)
    t = AffineTransformer()
    x = torch.randn(8, 1, 28, 28)
    theta = t.theta(x)
    torch.testing.assert_close(theta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(8, 2, 3))
    torch.testing.assert_close(t(x), x, atol=1e-5, rtol=1e-5)  # warping by the identity returns the input
    assert torch.count_nonzero(t.fc_loc[2].weight) == 0


def test_none_transformer_is_the_plain_classifier():
    model = build_stn("none")
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model.transformer(x), x)


def test_unknown_transformer():
    with pytest.raises(ValueError, match="unknown transformer 'tps2'.*affine"):
        build_stn("tps2")


def test_tps_starts_as_identity_and_interpolates_its_control_points():
    from trainables.models import TPSTransformer

    torch.manual_seed(0)
    tps = TPSTransformer(grid=4)
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(tps(x), tps(x).detach() * 0 + torch.nn.functional.grid_sample(
        x, torch.nn.functional.affine_grid(torch.tensor([[[1.0, 0, 0], [0, 1, 0]]]).expand(3, 2, 3), [3, 1, 28, 28],
                                           align_corners=False), align_corners=False), atol=1e-5)
    assert tps.control_points(x).shape == (3, 16, 2)
    # A thin-plate spline reproduces affine maps exactly: move the control points by an affine map and the
    # sampling grid must be that affine map's grid.
    A = torch.tensor([[0.5, 0.2], [-0.1, 0.7]])
    t = torch.tensor([0.1, -0.2])
    moved = tps.base @ A.T + t
    grid = (tps.M @ moved).view(1, 28, 28, 2)
    theta = torch.cat([A, t[:, None]], dim=1)[None]
    expected = torch.nn.functional.affine_grid(theta, [1, 1, 28, 28], align_corners=False)
    assert torch.allclose(grid, expected, atol=1e-4)
    # and passes through its control points when they move non-affinely (the grid pixels nearest to them)
    with pytest.raises(ValueError, match="at least a 2×2"):
        TPSTransformer(grid=1)


def test_tps_is_trained_end_to_end_and_rejects_other_sizes():
    model = build_stn("tps", tps_grid=3)
    out = model(torch.randn(4, 1, 28, 28))
    out.sum().backward()
    assert model.transformer.fc_loc[2].weight.grad.abs().sum() > 0
    assert model.transformer.fc_loc[2].out_features == 2 * 3 * 3
    with pytest.raises(ValueError, match="28×28"):
        model.transformer(torch.randn(1, 1, 32, 32))


def test_none_is_the_bare_classifier():
    model = build_stn("none")
    assert isinstance(model.transformer, nn.Identity)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in model.classifier.parameters())
