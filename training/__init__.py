"""AuthFace training (Stage I prior fine-tune, Stage II ControlNet), on accelerate. Never imports ComfyUI."""
