"""AuthFaceTrackNoise: one noise per face track, so a person starts from the same latent in every
frame of a video."""

from __future__ import annotations

from comfy_api.v0_0_2 import io

from authface_core.noise_keys import NOISE_KEYS, track_key

from .sockets import Faces


class AuthFaceTrackNoise(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceTrackNoise",
            display_name="AuthFace Track Noise",
            category="AuthFace/restore",
            description="Gives every face of a frame batch the noise of its track: the same person gets "
            "the same starting latent in every frame, so the restored face does not flicker. Put it "
            "between AuthFace Apply's latent and the sampler, with AuthFace Release Noise and faces "
            "from Detect Faces with order=track.",
            inputs=[
                io.Latent.Input("latent", tooltip="AuthFace Apply's latent: one per face"),
                Faces.Input("faces", tooltip="the tracked faces (Detect Faces, order=track), in the latent's order"),
            ],
            outputs=[io.Latent.Output("tracked_latent", display_name="latent")],
        )

    @classmethod
    def execute(cls, latent: dict, faces) -> io.NodeOutput:
        if not faces.faces:
            return io.NodeOutput(latent)  # the placeholder of a batch without faces: nothing to key
        count = latent["samples"].shape[0]
        if count != len(faces.faces):
            raise ValueError(f"the latent holds {count} items but there are {len(faces.faces)} faces: connect "
                             "AuthFace Apply's latent made from these faces, with no batch node between")
        if NOISE_KEYS in latent or "batch_index" in latent:
            raise ValueError("this latent already carries noise keys or a batch index (AuthFace Candidates or "
                             "a latent batch node): connect AuthFace Apply's latent directly")
        if any(face.track_id < 0 for face in faces.faces):
            raise ValueError("these faces carry no track ids: set order=track on AuthFace Detect Faces")
        keyed = dict(latent)
        keyed[NOISE_KEYS] = [track_key(face.track_id) for face in faces.faces]
        return io.NodeOutput(keyed)
