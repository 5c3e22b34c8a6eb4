"""Video restoration: face tracks across real frames, alignment smoothing, one noise per track,
and ``authface restore CLIP.mp4`` on a real encoded clip (frame rate, size, frame count, audio)."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from authface_core.faces.align import alignment_matrix, apply_affine
from authface_core.faces.detect import get_detector
from authface_core.faces.select import select_faces
from authface_core.faces.types import FaceSet
from authface_core.video.media import probe_video, read_frames
from authface_core.video.smoothing import AlignmentSmoother, OneEuroFilter, OneEuroSettings
from authface_core.video.tracking import FaceTracker, TrackerSettings, track_faces
from release_fixture import cached_release
from video_clips import audio_packets, drift, moved_frames, write_clip

CROP = 64


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut at 256 px: one face of about 44 px."""
    from skimage import data

    return cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def detector():
    return get_detector("dlib")


def as_float(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32) / 255.0


def test_tracks_keep_their_ids_through_missed_detections(t1_photo: Path, detector) -> None:
    """Six people in t1.jpg panned over 7 frames; one face is painted over in frames 2 and 3 so the
    real detector misses it. Every person keeps one id; without tolerance the face comes back
    under a new id."""
    photo = cv2.cvtColor(cv2.imread(str(t1_photo)), cv2.COLOR_BGR2RGB)
    frames = moved_frames(photo, drift(7) * 3.0)
    first = sorted(detector.detect(as_float(frames[0]), 0), key=lambda f: f.box[0])
    assert len(first) == 6
    x0, y0, x1, y1 = (int(round(v)) for v in first[2].box)
    for index in (2, 3):
        frames[index][max(y0 - 20, 0):y1 + 20, max(x0 - 20, 0):x1 + 20] = 128
    detections = [detector.detect(as_float(f), 0) for f in frames]
    assert len(detections[2]) == len(detections[3]) == 5, "the painted-over face must really be missed"

    def ids_by_person(settings: TrackerSettings) -> list[dict[int, int]]:
        tracker, result = FaceTracker(settings), []
        for faces in detections:
            ids = tracker.update(faces)
            # Person p of frame 0 is the face nearest p's position moved by the clip's known pan.
            result.append({min(range(6), key=lambda p: abs(first[p].box[0] - f.box[0])): i
                           for f, i in zip(faces, ids)})
        return result

    tolerant = ids_by_person(TrackerSettings(max_missed=2))
    assert all(frame == tolerant[0] for i, frame in enumerate(tolerant) if i not in (2, 3))
    assert {p: i for p, i in tolerant[0].items() if p != 2} == tolerant[2] == tolerant[3]
    assert sorted(tolerant[0].values()) == list(range(6))
    strict = ids_by_person(TrackerSettings(max_missed=0))
    assert strict[4][2] == 6 != strict[0][2]

    # The batch form used by the ComfyUI node: the same ids on the FaceSet's records.
    faceset = FaceSet(image_sizes=[f.shape[:2] for f in frames],
                      faces=[replace(f, image_index=i) for i, faces in enumerate(detections) for f in faces])
    missed = tolerant[0][2]
    untouched = track_faces(faceset, carry_missed=False)
    per_frame = [[f.track_id for f in untouched.faces if f.image_index == i] for i in range(7)]
    assert per_frame[0] == list(range(6)) and per_frame[6] == list(range(6))
    assert per_frame[2] == per_frame[3] == [i for i in range(6) if i != missed]
    # Carried (the default): the missed person is in frames 2 and 3 with their frame-1 face, so
    # the whole clip restores them; nothing else changes.
    tracked = track_faces(faceset)
    assert [[f.track_id for f in tracked.faces if f.image_index == i] for i in range(7)] == [list(range(6))] * 7
    carried = [f for f in tracked.faces if f.coasting]
    assert [(f.image_index, f.track_id) for f in carried] == [(2, missed), (3, missed)]
    last_seen = next(f for f in tracked.faces if f.image_index == 1 and f.track_id == missed)
    assert all(f.box == last_seen.box and np.array_equal(f.landmarks, last_seen.landmarks) for f in carried)
    assert [f for f in tracked.faces if not f.coasting] == untouched.faces
    # Detect Faces' preview says which faces were carried.
    from authface_core.faces.draw import draw_faces

    seen = replace(carried[0], coasting=False)
    assert not np.array_equal(draw_faces(frames[2], [carried[0]]), draw_faces(frames[2], [seen]))
    # Tracked after alignment, the alignments follow their faces; a carried face keeps its last one.
    from authface_core.faces.align import align_faces

    _, aligned = align_faces([as_float(f) for f in frames], faceset, size=CROP, method="ffhq")
    with_alignment = track_faces(aligned)
    assert [a.face for a in with_alignment.aligned] == with_alignment.faces
    last_matrix = next(a.matrix for a in with_alignment.aligned if a.face.image_index == 1 and a.face.track_id == missed)
    carried_alignments = [a.matrix for a in with_alignment.aligned if a.face.coasting]
    assert len(carried_alignments) == 2 and all(np.array_equal(m, last_matrix) for m in carried_alignments)
    # A missed face is carried for max_missed frames only.
    brief = track_faces(faceset, TrackerSettings(max_missed=1))
    assert [(f.image_index, f.track_id) for f in brief.faces if f.coasting] == [(2, missed)]
    # Detect Faces' order=track: select=index picks track ids, so person 4 is kept in every frame
    # although frames 2 and 3 have one face fewer before it.
    chosen = select_faces(tracked, mode="index", indices=[tolerant[0][4]], order="track")
    assert [f.image_index for f in chosen.faces] == list(range(7))
    assert all(abs(f.box[0] - first[4].box[0]) < 30 for f in chosen.faces)


def test_one_euro_filter_holds_a_still_signal_and_follows_a_move() -> None:
    """In crop-side units at 25 fps: landmark-like jitter of 1% is cut to a third; a move of two
    crop sides per second is followed within 5% of a side."""
    rng = np.random.default_rng(0)
    still = 5.0 + rng.normal(0.0, 0.01, size=(200, 1))
    smooth = OneEuroFilter(25.0)
    out = np.array([smooth(v) for v in still])
    assert out[50:].std() < 0.35 * still[50:].std()
    ramp = np.linspace(0.0, 8.0, 100)[:, None]
    follow = OneEuroFilter(25.0)
    lag = np.abs(np.array([follow(v) for v in ramp])[-1] - ramp[-1])
    assert lag < 0.05


def test_smoothing_reduces_alignment_jitter(astronaut: np.ndarray, detector) -> None:
    """dlib's landmarks on a real face under a known sub-pixel pan: the crop corners, with the
    known motion taken out, move much less from frame to frame once smoothed."""
    shifts = drift(24)
    faces = [min(detector.detect(as_float(f), 0), key=lambda f: f.box[1]) for f in moved_frames(astronaut, shifts)]
    corners = np.array([[-0.5, -0.5], [CROP - 0.5, -0.5], [-0.5, CROP - 0.5], [CROP - 0.5, CROP - 0.5]])

    def jitter(matrices: list[np.ndarray]) -> float:
        placed = np.array([apply_affine(np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2], corners) for m in matrices])
        still = placed - shifts[:, None, :]
        return float(np.linalg.norm(np.diff(still, axis=0), axis=2).mean())

    raw = [alignment_matrix(f, CROP) for f in faces]
    smoother = AlignmentSmoother(25.0, CROP, OneEuroSettings())
    smoothed = [smoother(m) for m in raw]
    print(f"crop corner jitter: raw {jitter(raw):.3f} px, smoothed {jitter(smoothed):.3f} px per frame")
    assert jitter(smoothed) < 0.5 * jitter(raw)
    assert jitter(raw) > 0.1, "the detector's landmarks should jitter under sub-pixel motion"


def test_smoothed_tracks_steady_the_crops_alignment_makes(astronaut: np.ndarray, detector) -> None:
    """The ComfyUI route (Smooth Tracks between Detect Faces and Align Faces): on a frame batch
    under a known sub-pixel pan, the crops Align Faces cuts jitter much less and match the
    smoother's matrices at any crop size; another alignment method is refused."""
    from authface_core.faces.align import align_faces
    from authface_core.video.smoothing import smooth_face_tracks

    shifts = drift(12)
    frames = [as_float(f) for f in moved_frames(astronaut, shifts)]
    detected = FaceSet(image_sizes=[f.shape[:2] for f in frames],
                       faces=[replace(min(detector.detect(f, 0), key=lambda d: d.box[1]), image_index=i)
                              for i, f in enumerate(frames)])
    tracked = track_faces(detected)
    smoothed = smooth_face_tracks(tracked, "ffhq", 25.0)
    corners = np.array([[-0.5, -0.5], [CROP - 0.5, -0.5], [-0.5, CROP - 0.5], [CROP - 0.5, CROP - 0.5]])

    def jitter(faces: FaceSet) -> float:
        _, aligned = align_faces(frames, faces, size=CROP, method="ffhq")
        placed = np.array([apply_affine(a.inverse_matrix, corners) for a in aligned.aligned])
        return float(np.linalg.norm(np.diff(placed - shifts[:, None, :], axis=0), axis=2).mean())

    smoother = AlignmentSmoother(25.0, CROP, OneEuroSettings())
    expected = [smoother(alignment_matrix(f, CROP)) for f in tracked.faces]
    _, aligned = align_faces(frames, smoothed, size=CROP, method="ffhq")
    assert all(np.allclose(a.matrix, m, atol=1e-9) for a, m in zip(aligned.aligned, expected))
    print(f"aligned crop jitter: raw {jitter(tracked):.3f} px, smoothed {jitter(smoothed):.3f} px per frame")
    assert jitter(smoothed) < 0.5 * jitter(tracked)
    with pytest.raises(ValueError, match="same method"):
        align_faces(frames, smoothed, size=CROP, method="five_point")
    with pytest.raises(ValueError, match="order=track"):
        smooth_face_tracks(detected, "ffhq", 25.0)


@pytest.fixture(scope="module")
def pipeline():
    from authface_core.pipeline import AuthFacePipeline

    return AuthFacePipeline.from_release(cached_release("plain"))


def test_per_crop_seeds_do_not_depend_on_the_batch(pipeline) -> None:
    """Crop n of a batch draws from its own seed: alone or beside another crop, it comes out the
    same (DDPM: the initial latent and the step noise)."""
    lq = torch.rand(2, 3, CROP, CROP, generator=torch.Generator().manual_seed(1))
    both = pipeline.restore(lq, steps=2, cfg=1.0, seed=[11, 12], color_fix="none")
    alone = pipeline.restore(lq[1:], steps=2, cfg=1.0, seed=[12], color_fix="none")
    assert torch.allclose(both[1], alone[0], atol=1e-4)
    assert (both[1] - lq[1]).abs().mean() > 0.05


def test_same_track_restores_the_same_way_every_frame(pipeline, astronaut: np.ndarray, detector) -> None:
    """A still clip: with one noise per track every frame's face comes out identical; with noise
    per frame it does not."""
    from authface_core.video.restore import TemporalSettings, VideoFaceRestorer

    outputs = {}
    for track_noise in (True, False):
        restorer = VideoFaceRestorer(pipeline, detector, 25.0, CROP, TemporalSettings(track_noise=track_noise),
                                     seed=3, steps=1, cfg=1.0, sampler="ddim", color_fix="none")
        outputs[track_noise] = [restorer.restore_frame(astronaut)[0] for _ in range(2)]
    assert np.abs(outputs[True][0] - astronaut / 255.0).max() > 0.1, "the faces were not restored"
    assert np.array_equal(outputs[True][0], outputs[True][1])
    assert np.abs(outputs[False][0] - outputs[False][1]).max() > 0.05


def test_restore_command_on_a_video_keeps_rate_size_frames_and_audio(astronaut: np.ndarray, tmp_path: Path) -> None:
    from authface_core.cli import main

    source = write_clip(tmp_path / "clip.mp4", moved_frames(astronaut, drift(3)), Fraction(30000, 1001))
    out = tmp_path / "out"
    status = main(["restore", str(source), "--model", str(cached_release("plain")), "--out", str(out),
                   "--size", str(CROP), "--steps", "1", "--cfg", "1", "--sampler", "ddim"])
    assert status == 0
    target = out / "clip.mp4"
    before, after = probe_video(source), probe_video(target)
    assert (after.width, after.height, after.fps, after.has_audio) == (256, 256, Fraction(30000, 1001), True)
    restored, original = list(read_frames(target)), list(read_frames(source))
    assert len(restored) == len(original) == before.frames == 3
    assert audio_packets(target) == audio_packets(source) != []
    x0, y0, x1, y1 = 88, 41, 132, 84  # the face
    changed = np.abs(restored[0][y0:y1, x0:x1].astype(float) - original[0][y0:y1, x0:x1]).mean()
    # Away from the faces only the second H.264 generation shows (about 3 levels on this texture).
    background = np.abs(restored[0][200:, :60].astype(float) - original[0][200:, :60]).mean()
    assert changed > 3.0 * background and background < 5.0


def test_writer_keeps_odd_sizes_and_copies_audio_without_a_restore(astronaut: np.ndarray, tmp_path: Path) -> None:
    """4:2:0 H.264 needs even sides: an odd-sized source keeps its size (full chroma instead)."""
    from authface_core.video.media import VideoWriter, output_suffix

    odd = [f[:97, :65] for f in moved_frames(astronaut, drift(3))]
    source = write_clip(tmp_path / "odd.mkv", [f[:96, :64] for f in odd], Fraction(25))
    info = probe_video(source)
    target = tmp_path / f"out{output_suffix(tmp_path / 'x.webm')}"
    with VideoWriter(target, replace(info, width=65, height=97), audio_from=source) as writer:
        for frame in odd:
            writer.write(frame)
    written = list(read_frames(target))
    assert target.suffix == ".mkv" and len(written) == 3 and written[0].shape == (97, 65, 3)
    assert np.abs(written[1].astype(float) - odd[1]).mean() < 3.0
    assert audio_packets(target) == audio_packets(source) != []
