"""model.dan: stage wiring, freezing, and the config round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import DANConfig
from model.dan import DAN
from model.similarity import estimate_similarity, invert_similarity, transform_points

TINY = DANConfig(widths=(4, 4, 4, 4), fc_units=16, num_stages=3)


def _model(mean_shape: np.ndarray, config: DANConfig = TINY) -> DAN:
    torch.manual_seed(0)
    model = DAN(config, mean_shape=torch.from_numpy(mean_shape).float())
    for stage in model.stages:
        torch.nn.init.normal_(stage.fc2.weight, std=0.05)
    return model.eval()


def test_paper_stage_matches_table_1() -> None:
    model = DAN(DANConfig(num_stages=1))
    convs = [m for m in model.stages[0].features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (1, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)
    ]  # fmt: skip
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs)
    fc1 = model.stages[0].fc1[0]
    assert (fc1.in_features, fc1.out_features) == (7 * 7 * 512, 256)
    assert model.stages[0].fc2.out_features == 136


def test_every_stage_returns_landmarks(mean_shape: np.ndarray) -> None:
    model = _model(mean_shape)
    shapes = model(torch.rand(2, 1, 112, 112) * 255)
    assert len(shapes) == 3 and all(s.shape == (2, 68, 2) for s in shapes)
    assert len(model(torch.rand(2, 1, 112, 112), num_stages=1)) == 1


def test_stage_output_follows_equation_2(mean_shape: np.ndarray) -> None:
    """S_2 = T^-1(T(S_1) + dS_2), T the similarity from S_1 to S0."""
    model = _model(mean_shape)
    x = torch.rand(2, 1, 112, 112) * 255
    s1, s2 = model(x, num_stages=2)
    image = model.normalise(x)
    _, fc1 = model.stages[0](image)
    stage_input, aligned, A, t = model.connections[0](image, s1, fc1, model.mean_shape)
    ds, _ = model.stages[1](stage_input)
    A2, t2 = estimate_similarity(s1, model.mean_shape)
    torch.testing.assert_close(aligned, transform_points(s1, A2, t2))
    A_inv, t_inv = invert_similarity(A, t)
    torch.testing.assert_close(s2, transform_points(aligned + ds, A_inv, t_inv))


def test_frozen_stage_gets_no_update(mean_shape: np.ndarray) -> None:
    model = _model(mean_shape)
    model.freeze_stage(0)
    model.train()
    assert not model.stages[0].training and model.stages[1].training
    before = {k: v.clone() for k, v in model.stages[0].state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    loss = model(torch.rand(4, 1, 112, 112) * 255, num_stages=2)[-1].square().mean()
    loss.backward()
    optimizer.step()
    for k, v in model.stages[0].state_dict().items():
        torch.testing.assert_close(v, before[k], msg=f"{k} moved")
    model.freeze_stage(0, frozen=False)
    assert all(p.requires_grad for p in model.stages[0].parameters())


def test_frozen_batch_norm_keeps_its_statistics_while_the_weights_train(
    mean_shape: np.ndarray,
) -> None:
    model = _model(mean_shape)
    model.freeze_batch_norm()
    model.train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}
    convs = [m for s in model.stages[:2] for m in s.modules() if isinstance(m, torch.nn.Conv2d)]
    weights = [c.weight.detach().clone() for c in convs]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = model(torch.rand(4, 1, 112, 112) * 255, num_stages=2)[-1].square().mean()
    loss.backward()
    optimizer.step()
    state = model.state_dict()
    for k, v in stats.items():
        torch.testing.assert_close(state[k], v, msg=f"{k} moved")
    assert convs and all(not torch.equal(c.weight, w) for c, w in zip(convs, weights, strict=True))
    model.freeze_batch_norm(False)
    assert all(m.training for m in norms)


def test_config_round_trip_and_validation() -> None:
    assert DANConfig.from_json(TINY.to_json()) == TINY
    with pytest.raises(ValueError, match="num_stages"):
        DANConfig(num_stages=0)
    with pytest.raises(ValueError, match="heatmap_support"):
        DANConfig(heatmap_support="disc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown DANConfig fields"):
        DANConfig.from_dict({"stages": 2})


def test_given_outputs_of_earlier_stages_give_the_later_stages_of_the_full_pass(
    mean_shape: np.ndarray,
) -> None:
    model = _model(mean_shape)
    images = torch.rand(2, 1, 112, 112) * 255
    shapes, features = model.forward_features(images)
    for done in (1, 2):
        given = (done, shapes[done - 1], features[done - 1])
        later, later_features = model.forward_features(images, given=given)
        assert len(later) == 3 - done
        for a, b in zip(later, shapes[done:], strict=True):
            torch.testing.assert_close(a, b)
        for a, b in zip(later_features, features[done:], strict=True):
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"given outputs of stage k need 1 <= k < 2 stages, got 2"):
        model(images, num_stages=2, given=(2, shapes[1], features[1]))
