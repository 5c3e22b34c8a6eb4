"""The pack's ComfyExtension: the list of V3 nodes ComfyUI registers."""

from __future__ import annotations

from comfy_api.v0_0_2 import ComfyExtension, io

from .align import AuthFaceAlignFaces
from .apply import AuthFaceApply
from .candidates import AuthFaceCandidates
from .colorfix import AuthFaceColorFix
from .conditioning import AuthFaceConditioning
from .detect import AuthFaceDetectFaces
from .face_prompts import AuthFaceFacePrompts
from .identity_guidance import AuthFaceIdentityGuidance
from .identity_score import AuthFaceIdentityScore
from .masks import AuthFaceRegionMasks
from .model_loader import AuthFaceModelLoader
from .model_paths import register_model_folders
from .noise import AuthFaceReleaseNoise
from .paste import AuthFacePasteFaces
from .pick_best import AuthFacePickBest
from .save16 import AuthFaceSaveImage16
from .smooth_tracks import AuthFaceSmoothTracks
from .track_noise import AuthFaceTrackNoise


class AuthFaceExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [
            AuthFaceDetectFaces,
            AuthFaceAlignFaces,
            AuthFaceRegionMasks,
            AuthFacePasteFaces,
            AuthFaceModelLoader,
            AuthFaceConditioning,
            AuthFaceFacePrompts,
            AuthFaceApply,
            AuthFaceIdentityGuidance,
            AuthFaceReleaseNoise,
            AuthFaceSmoothTracks,
            AuthFaceTrackNoise,
            AuthFaceCandidates,
            AuthFacePickBest,
            AuthFaceIdentityScore,
            AuthFaceColorFix,
            AuthFaceSaveImage16,
        ]


async def comfy_entrypoint() -> AuthFaceExtension:
    register_model_folders()
    return AuthFaceExtension()
