"""Constants shared by the model, preprocessing and export code."""

# Per-channel mean and std of OpenAI's CLIP training images, used by every released CLIP.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
