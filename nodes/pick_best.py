"""AuthFacePickBest: per face, the restoration candidate closest to the reference identity."""

from __future__ import annotations

import numpy as np
import torch
from comfy_api.v0_0_2 import io

from authface_core.candidates import candidate_count, pick_best, picked_faces
from authface_core.faces.types import FaceSet
from authface_core.identity_scores import report_lines, score_against_references, scored_crop

from .identity_inputs import crop_landmarks, embedder_input, make_embedder, reference_inputs, references
from .runtime import images_to_numpy, numpy_to_images, placeholder_images
from .sockets import Faces


class AuthFacePickBest(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFacePickBest",
            display_name="AuthFace Pick Best",
            category="AuthFace/identity",
            description="Keeps, for every face, the candidate (from AuthFace Candidates) whose identity "
            "embedding is closest to the reference: the low-quality faces themselves, or a photo of the "
            "person (one for every face, or one per face). Its crops and faces plug into Color Fix and "
            "Paste Faces; the faces record which candidate each face kept and its score.",
            inputs=[
                io.Image.Input("candidates", lazy=True,
                               tooltip="the decoded candidates: faces x N crops, candidate-major; not "
                               "evaluated when the batch has no face"),
                Faces.Input("faces", tooltip="the aligned faces that were restored (AuthFace Align Faces)"),
                *reference_inputs(),
                embedder_input(),
            ],
            outputs=[
                io.Image.Output("best", tooltip="one crop per face, in the faces' order"),
                Faces.Output("picked_faces", display_name="faces", tooltip="the faces, with each one's pick"),
                io.Image.Output("preview", tooltip="every candidate, face by face, with its score; the kept "
                                "one is marked"),
                io.Float.Output("similarity", is_output_list=True, tooltip="the kept candidate's, per face"),
                io.String.Output("report"),
            ],
        )

    @classmethod
    def check_lazy_status(cls, candidates, faces: FaceSet, reference, reference_kind, embedder) -> list[str]:
        return ["candidates"] if faces.aligned and candidates is None else []

    @classmethod
    def execute(cls, candidates: torch.Tensor | None, faces: FaceSet, reference: torch.Tensor,
                reference_kind: str, embedder: str) -> io.NodeOutput:
        if not faces.aligned:
            placeholder = placeholder_images(faces.crop_size or 64)
            return io.NodeOutput(placeholder, picked_faces(faces, []), placeholder, [],
                                 "no face in this batch: nothing to pick")
        count, size = len(faces.aligned), candidates.shape[1]
        n = candidate_count(candidates.shape[0], count)
        landmarks = crop_landmarks(faces, size)
        refs = references(reference, reference_kind, count, size, landmarks)
        crops = [c[..., :3] for c in images_to_numpy(candidates)]
        scores = score_against_references(make_embedder(embedder), crops, refs.crops, landmarks * n, refs.landmarks)
        similarities = np.array([s.similarity for s in scores]).reshape(n, count)
        same = np.array([s.same_person for s in scores]).reshape(n, count)
        picks = pick_best(similarities, same)
        best = candidates[[p.candidate * count + p.face for p in picks]]
        preview = [scored_crop(crops[k * count + i], f"face {i} cand {k}{' BEST' if picks[i].candidate == k else ''}",
                               float(similarities[k, i]), bool(same[k, i]))
                   for i in range(count) for k in range(n)]
        titles = [f"face {p.face} (candidate {p.candidate} of {n})" for p in picks]
        report = report_lines(titles, [p.similarity for p in picks], [p.same_person for p in picks], refs.notes)
        return io.NodeOutput(best, picked_faces(faces, picks), numpy_to_images(preview),
                             [p.similarity for p in picks], report)
