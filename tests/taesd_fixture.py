"""Random-weight TAESD XL files for a ComfyUI host, made with the host's own architecture.

ComfyUI's VAE Loader offers ``taesdxl`` when ``models/vae_approx/`` holds
``taesdxl_encoder.safetensors`` and ``taesdxl_decoder.safetensors`` (state dicts of
``comfy.taesd.taesd.Encoder`` / ``Decoder``, the layout of madebyollin/taesd's releases). They
are written by a subprocess that imports the host's ``comfy.taesd.taesd`` (the test process
never imports ComfyUI), with seeded random weights (torch's default initialisation, which
ComfyUI's layer classes skip). The decoder's last bias is 0.5 so that its
images sit mid-grey, away from the [0, 1] clamp ComfyUI applies to decoded images, where a
random decoder's gradients would vanish.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from comfy_host import host_dir, host_env

_WRITE = """
import sys
import torch
from safetensors.torch import save_file
import comfy.cli_args

comfy.cli_args.args.cpu = True  # as the hosts run; importing the model code looks for a device
from comfy.taesd.taesd import Decoder, Encoder

torch.manual_seed(int(sys.argv[2]))
encoder, decoder = Encoder(4), Decoder(4)
with torch.no_grad():
    # ComfyUI builds these layers with weight initialisation disabled (comfy.ops): initialise
    # them as torch would.
    for module in [*encoder.modules(), *decoder.modules()]:
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.Conv2d.reset_parameters(module)
    decoder[-1].bias.fill_(0.5)
for name, module in (("encoder", encoder), ("decoder", decoder)):
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, f"{sys.argv[1]}/taesdxl_{name}.safetensors")
"""

FILE_NAMES = ("taesdxl_encoder.safetensors", "taesdxl_decoder.safetensors")


def build_taesdxl(version: str, folder: Path, seed: int = 0) -> list[Path]:
    """Write the two TAESD XL files for ComfyUI ``version`` into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", _WRITE, str(folder), str(seed)], cwd=host_dir(version),
                          env=host_env(version), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"writing TAESD XL weights with ComfyUI {version} failed:\n{done.stderr[-3000:]}")
    return [folder / name for name in FILE_NAMES]
