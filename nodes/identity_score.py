"""AuthFaceIdentityScore: how much each restored face still looks like its reference."""

from __future__ import annotations

import torch
from comfy_api.v0_0_2 import io

from authface_core.faces.types import FaceSet
from authface_core.identity_scores import report_lines, score_against_references, scored_crop

from .identity_inputs import crop_landmarks, embedder_input, make_embedder, reference_inputs, references
from .runtime import images_to_numpy, numpy_to_images
from .sockets import Faces


class AuthFaceIdentityScore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceIdentityScore",
            display_name="AuthFace Identity Score",
            category="AuthFace/identity",
            description="Scores each restored face against its reference with a face recognition "
            "embedding: cosine similarity (higher = more alike) and the embedding's documented "
            "same-person verdict. The preview writes the score on each crop (green: same person, red: "
            "not). Connect faces (from Align Faces) to score with their landmarks and to skip batches "
            "without a face.",
            inputs=[
                io.Image.Input("restored", tooltip="restored aligned faces, one per face"),
                *reference_inputs(),
                embedder_input(),
                Faces.Input("faces", optional=True, tooltip="the aligned faces (AuthFace Align Faces)"),
            ],
            outputs=[
                io.Float.Output("similarity", is_output_list=True, tooltip="one per face"),
                io.Boolean.Output("same_person", is_output_list=True, tooltip="one per face"),
                io.Image.Output("preview"),
                io.String.Output("report"),
            ],
        )

    @classmethod
    def execute(cls, restored: torch.Tensor, reference: torch.Tensor, reference_kind: str, embedder: str,
                faces: FaceSet | None = None) -> io.NodeOutput:
        if faces is not None and not faces.aligned:
            return io.NodeOutput([], [], restored, "no face in this batch: nothing to score")
        count, size = restored.shape[0], restored.shape[1]
        if faces is not None and len(faces.aligned) != count:
            raise ValueError(f"got {count} restored faces but {len(faces.aligned)} aligned faces: connect the "
                             "restored crops of these faces, in their order")
        landmarks = None if faces is None else crop_landmarks(faces, size)
        refs = references(reference, reference_kind, count, size, landmarks)
        crops = [c[..., :3] for c in images_to_numpy(restored)]
        scores = score_against_references(make_embedder(embedder), crops, refs.crops, landmarks, refs.landmarks)
        titles = [f"face {i}" for i in range(count)]
        similarity = [s.similarity for s in scores]
        same = [s.same_person for s in scores]
        preview = numpy_to_images([scored_crop(c, t, s.similarity, s.same_person)
                                   for c, t, s in zip(crops, titles, scores)])
        return io.NodeOutput(similarity, same, preview, report_lines(titles, similarity, same, refs.notes))
