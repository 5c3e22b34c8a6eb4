"""Gradient routing of the real Stage II updates (``training.stage2.step``) on a tiny SDXL-like
release loaded the way training loads it, with real aligned faces at 128 px.

ControlNet step: only the ControlNet changes; the discriminators get no gradient, the frozen UNet
(and VAE) none at all, yet both loss terms reach the ControlNet through the UNet. Discriminator
step: only the discriminators change."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from authface_core.losses.facial import FacialComponentLoss
from authface_core.losses.time_weight import TimeWeighting
from stage2_data import prepared_faces
from test_pipeline import build_tiny_release
from training.stage2.data import Stage2Dataset
from training.stage2.loop import _alphas_cumprod
from training.sdxl_parts import SDXLParts
from training.stage2.models import load_frozen_parts, make_controlnet, make_discriminators
from training.stage2.step import Stage2Objective, StepInputs, controlnet_update, discriminator_update

RESOLUTION = 128


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_release(tmp_path_factory.mktemp("stage2_step_release"))


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    hq, landmarks = prepared_faces(tmp_path_factory.mktemp("stage2_step_data"))
    dataset = Stage2Dataset(hq, landmarks, RESOLUTION)
    return default_collate([dataset[(0, index)] for index in range(2)])


@dataclass
class Setup:
    accelerator: object
    parts: SDXLParts
    objective: Stage2Objective
    optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"controlnet": self.accelerator.unwrap_model(self.objective.controlnet), "unet": self.parts.unet,
                "vae": self.parts.vae, "discriminators": self.objective.discriminators}


def make_setup(release: Path, weighting: str = "logit_normal", accumulation: int = 1) -> Setup:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=accumulation)
    set_seed(0)
    parts = load_frozen_parts(release)
    controlnet = make_controlnet(parts.unet, "cpu")
    discriminators = make_discriminators()
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=1e-3)
    d_optimizer = torch.optim.Adam(discriminators.parameters(), lr=2e-3, betas=(0.9, 0.99))
    controlnet, optimizer = accelerator.prepare(controlnet, optimizer)
    from authface_core.pipeline import AuthFacePipeline
    from authface_core.pipeline.loading import ReleaseModels

    encoder = AuthFacePipeline(ReleaseModels(parts.unet, controlnet, parts.vae, parts.text_encoder,
                                             parts.text_encoder_2, parts.tokenizer, parts.tokenizer_2), parts.schedule)
    embeds, pooled = (t.clone() for t in encoder.encode_prompt(""))
    objective = Stage2Objective(parts.unet, parts.vae, controlnet, discriminators, _alphas_cumprod(parts.schedule),
                                embeds, pooled, RESOLUTION, FacialComponentLoss(TimeWeighting(weighting)))
    return Setup(accelerator, parts, objective, optimizer, d_optimizer)


@pytest.fixture()
def setup(release: Path) -> Iterator[Setup]:
    yield make_setup(release)


def snapshot(setup: Setup) -> dict[str, dict[str, torch.Tensor]]:
    return {name: {k: p.detach().clone() for k, p in module.named_parameters()}
            for name, module in setup.modules().items()}


def changed(before: dict[str, dict[str, torch.Tensor]], setup: Setup) -> dict[str, int]:
    """Number of parameter tensors of each module that differ from the snapshot."""
    return {name: sum(not torch.equal(before[name][k], p.detach()) for k, p in module.named_parameters())
            for name, module in setup.modules().items()}


def inputs_for(setup: Setup, batch: dict[str, torch.Tensor], seed: int = 0) -> StepInputs:
    return setup.objective.prepare(batch, torch.Generator().manual_seed(seed))


def test_controlnet_step_moves_only_the_controlnet(setup: Setup, batch: dict[str, torch.Tensor]) -> None:
    before = snapshot(setup)
    inputs = inputs_for(setup, batch)
    output = controlnet_update(setup.accelerator, setup.objective, inputs, setup.optimizer, 1.0)
    assert float(output.terms["noise"]) > 0 and float(output.terms["facial"]) > 0
    for name in ("eyes_adv", "eyes_style", "mouth_adv", "mouth_style", "weight"):
        assert float(output.terms[name]) > 0, name
    counts = changed(before, setup)
    assert counts["controlnet"] > 0
    assert counts["unet"] == counts["vae"] == counts["discriminators"] == 0
    for name in ("unet", "vae", "discriminators"):
        grads = [p.grad for p in setup.modules()[name].parameters()]
        assert all(g is None for g in grads), f"the ControlNet step left gradients on the {name}"
    assert not any(p.requires_grad for p in setup.parts.unet.parameters())


@pytest.mark.parametrize("term", ["noise", "facial"])
def test_each_loss_term_reaches_the_controlnet_through_the_frozen_unet(
        setup: Setup, batch: dict[str, torch.Tensor], term: str) -> None:
    """Back-propagate one term alone: the ControlNet's zero convolutions (which feed the UNet
    only) get a gradient, the UNet's and discriminators' parameters none."""
    inputs = inputs_for(setup, batch)
    output = setup.objective.generator_losses(inputs)
    getattr(output, term).backward()
    controlnet = setup.modules()["controlnet"]
    zero_convs = [controlnet.controlnet_mid_block, *controlnet.controlnet_down_blocks]
    norms = [float(conv.weight.grad.norm()) for conv in zero_convs]
    assert all(n > 0 for n in norms), norms
    assert all(p.grad is None for p in setup.parts.unet.parameters())
    assert all(p.grad is None for p in setup.objective.discriminators.parameters())


def test_discriminator_step_moves_only_the_discriminators(setup: Setup, batch: dict[str, torch.Tensor]) -> None:
    inputs = inputs_for(setup, batch)
    output = controlnet_update(setup.accelerator, setup.objective, inputs, setup.optimizer, 1.0)
    before = snapshot(setup)
    terms = discriminator_update(setup.accelerator, setup.objective, inputs, output.z0_pred, setup.d_optimizer)
    assert set(terms) == {"d_eyes", "d_mouth"} and all(float(v) > 0 for v in terms.values())
    counts = changed(before, setup)
    total = len(list(setup.objective.discriminators.parameters()))
    assert counts["discriminators"] == total
    assert counts["controlnet"] == counts["unet"] == counts["vae"] == 0
    assert all(p.grad is None for p in setup.modules()["controlnet"].parameters())
    assert all(p.grad is None for p in setup.objective.discriminators.parameters()), "D gradients not cleared"


def test_without_time_weighting_only_the_noise_loss_trains(release: Path, batch: dict[str, torch.Tensor]) -> None:
    setup = make_setup(release, weighting="none")
    before = snapshot(setup)
    inputs = inputs_for(setup, batch)
    output = controlnet_update(setup.accelerator, setup.objective, inputs, setup.optimizer, 1.0)
    assert float(output.terms["facial"]) == 0.0 and float(output.terms["total"]) == float(output.terms["noise"])
    assert discriminator_update(setup.accelerator, setup.objective, inputs, output.z0_pred, setup.d_optimizer) == {}
    counts = changed(before, setup)
    assert counts["controlnet"] > 0 and counts["discriminators"] == 0


def test_accumulation_steps_only_on_the_last_micro_batch(release: Path, batch: dict[str, torch.Tensor]) -> None:
    setup = make_setup(release, accumulation=2)
    before = snapshot(setup)
    for micro in range(2):
        with setup.accelerator.accumulate(setup.objective.controlnet):
            inputs = inputs_for(setup, batch, seed=micro)
            output = controlnet_update(setup.accelerator, setup.objective, inputs, setup.optimizer, 1.0)
            discriminator_update(setup.accelerator, setup.objective, inputs, output.z0_pred, setup.d_optimizer)
        counts = changed(before, setup)
        if micro == 0:
            assert counts["controlnet"] == counts["discriminators"] == 0, "stepped before the gradient was complete"
            assert all(p.grad is not None for p in setup.objective.discriminators.parameters())
        else:
            assert counts["controlnet"] > 0 and counts["discriminators"] > 0
