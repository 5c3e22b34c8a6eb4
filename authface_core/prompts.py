"""The released method's fixed prompts and sampling settings (docs/method.md).

Texts are the defaults of the authors' ``test_face_xl.py`` (``--added_prompt``,
``--negative_prompt``), character for character; ``option/test/test_base.sh`` sets the guidance
scale to 8 and 50 steps. Each prompt is encoded in a single 77-token CLIP window, so the end of
the negative prompt ("easy negative") never reaches the model.
"""

from __future__ import annotations

POSITIVE_PROMPT = (
    "hyper-realistic portrait, face close-up, super detailed, Cinematic, High Contrast, highly "
    "detailed, taken using a Canon EOS R camera,hyper detailed photo - realistic maximum detail, "
    "32k, ultra HD,extreme meticulous detailing, skin pore detailing,hyper sharpness, perfect "
    "without deformations"
)

NEGATIVE_PROMPT = (
    "unreal face, asymmetrical eyes, oil painting, illustration, drawing, art, sketch,cartoon, "
    "CG Style, 3D render, unreal engine, blurring, dirty, messy, worst quality, low quality, "
    "frames, watermark, signature, jpeg artifacts, deformed, lowres, over-smooth, "
    "malformed/disproportionate hands/fingers, ugly, easy negative"
)

RELEASE_CFG = 8.0
RELEASE_STEPS = 50
