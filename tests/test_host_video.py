"""The authface_restore_video workflow in the real hosts: a real encoded clip in, the hosts' own
video nodes (LoadVideo, GetVideoComponents, CreateVideo, SaveVideo) around Detect Faces with
order=track and AuthFace Track Noise; random-weight release, 64 px crops, one step."""

from __future__ import annotations

import json
import uuid
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from authface_core.video.media import probe_video, read_frames
from comfy_host import REPO, ComfyHost
from release_fixture import cached_release
from video_clips import audio_seconds, write_clip

pytestmark = pytest.mark.host

WORKFLOW = REPO / "workflows" / "api" / "authface_restore_video.json"
FACE = (88, 41, 132, 84)  # the astronaut's face in the 256 px clip


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three identical frames of the astronaut (256 px) at 24 fps with an AAC tone: any flicker in
    the output comes from the restoration, not from motion."""
    from skimage import data

    photo = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    return write_clip(tmp_path_factory.mktemp("video") / "still.mp4", [photo] * 3, Fraction(24))


def video_prompt(host: ComfyHost, clip: Path, track_noise: bool) -> dict:
    prompt = json.loads(WORKFLOW.read_text())
    prompt["1"]["inputs"]["file"] = host.add_input(clip)
    prompt["4"]["inputs"]["size"] = 64
    prompt["6"]["inputs"].update(width=64, height=64)
    prompt["9"]["inputs"]["steps"] = 1
    prompt["11"]["inputs"]["cfg"] = 1.0
    prompt["18"]["inputs"]["filename_prefix"] = f"test/{uuid.uuid4().hex[:8]}"
    if not track_noise:
        prompt["13"]["inputs"]["latent_image"] = ["7", 2]
        del prompt["8"]
    return prompt


def saved_video(host: ComfyHost, entry: dict) -> Path:
    [saved] = [item for key in ("images", "videos") for item in entry["outputs"]["18"].get(key, [])]
    return host.base_dir / saved["type"] / saved.get("subfolder", "") / saved["filename"]


def face_flicker(frames: list[np.ndarray]) -> float:
    x0, y0, x1, y1 = FACE
    crops = [f[y0:y1, x0:x1].astype(np.float64) for f in frames]
    return float(np.mean([np.abs(b - a).mean() for a, b in zip(crops, crops[1:])]))


def test_video_workflow_keeps_rate_size_frames_audio_and_one_noise_per_track(comfy_host: ComfyHost,
                                                                            still_clip: Path) -> None:
    comfy_host.add_model("authface", "AuthFace", cached_release("plain"))
    outputs = {}
    for track_noise in (True, False):
        entry = comfy_host.run(video_prompt(comfy_host, still_clip, track_noise), timeout=900)
        outputs[track_noise] = saved_video(comfy_host, entry)
    restored = outputs[True]
    info = probe_video(restored)
    assert (info.width, info.height, info.fps, info.has_audio) == (256, 256, Fraction(24), True)
    frames, source = list(read_frames(restored)), list(read_frames(still_clip))
    assert len(frames) == len(source) == 3
    x0, y0, x1, y1 = FACE
    assert np.abs(frames[0][y0:y1, x0:x1].astype(float) - source[0][y0:y1, x0:x1]).mean() > 10.0
    # The hosts' CreateVideo/SaveVideo decode and re-encode the sound: compare its duration.
    assert audio_seconds(still_clip) > 0.1
    assert abs(audio_seconds(restored) - audio_seconds(still_clip)) < 0.05
    with_tracks, without = face_flicker(frames), face_flicker(list(read_frames(outputs[False])))
    print(f"ComfyUI {comfy_host.version}: face flicker on a still clip, track noise {with_tracks:.2f} levels, "
          f"plain batch noise {without:.2f} levels")
    # Identical frames restored identically; what remains is the host encoder's (0.3.75's H.264
    # settings leave about 4 levels between its first and later frames).
    assert with_tracks < 0.1 * without and without > 20.0
