"""Tiny random diffusers models with SD's block layout, for engine tests (seeded, CPU, fast)."""

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from comfyui_drag.drag_ops.model import Conditioning, DiffusersVAECodec, DiffusionModel
from comfyui_drag.drag_ops.network import DiffusersUNet
from comfyui_drag.drag_ops.ddim import DDIMSchedule

CONTEXT_DIM = 32


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 32, 64, 64), norm_num_groups=16, cross_attention_dim=CONTEXT_DIM,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=8, sample_size=32).eval()


def tiny_model(num_steps: int = 10, seed: int = 0, eps_scale: float = 0.1) -> DiffusionModel:
    """eps_scale shrinks the random noise prediction: a trained UNet's prediction is consistent
    along the DDIM path, a random one's is not, and inversion is only as exact as that."""
    unet = tiny_unet(seed)
    with torch.no_grad():
        unet.conv_out.weight.mul_(eps_scale)
        unet.conv_out.bias.mul_(eps_scale)
    return DiffusionModel(DiffusersUNet(unet), DiffusersVAECodec(tiny_vae(seed), scaling_factor=1.0),
                          DDIMSchedule.stable_diffusion(num_steps))


def tiny_cond(seed: int = 0) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    return Conditioning(torch.randn(1, 4, CONTEXT_DIM, generator=g))


def blob_image(h: int = 32, w: int = 32, centre=(10, 12), radius: float = 5) -> torch.Tensor:
    """[1, 3, h, w] in [-1, 1]: a red disc on a grey gradient."""
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    disc = (((x - centre[0]) ** 2 + (y - centre[1]) ** 2) <= radius ** 2).float()
    bg = 0.2 * (x / w) - 0.1
    img = torch.stack([bg + disc * 0.9, bg - disc * 0.5, bg - disc * 0.5])
    return img[None].clamp(-1, 1)


SDXL_TIME_EMBED = 8  # width of each size/crop number's embedding (SDXL: 256)


def tiny_sdxl_unet(seed: int = 0) -> UNet2DConditionModel:
    """SDXL's layout in miniature: three levels, no attention at the first, two transformer layers at the
    last, linear projections, and the "text_time" embedding of a 1280-wide pooled prompt and six numbers."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 32, 64), norm_num_groups=16, cross_attention_dim=CONTEXT_DIM,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2), attention_head_dim=(2, 2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=SDXL_TIME_EMBED,
        projection_class_embeddings_input_dim=1280 + 6 * SDXL_TIME_EMBED,
    ).eval()


def tiny_sdxl_model(num_steps: int = 10, seed: int = 0, eps_scale: float = 0.1) -> DiffusionModel:
    unet = tiny_sdxl_unet(seed)
    with torch.no_grad():  # as tiny_model: a consistent enough prediction for inversion to hold
        unet.conv_out.weight.mul_(eps_scale)
        unet.conv_out.bias.mul_(eps_scale)
    return DiffusionModel(DiffusersUNet(unet), DiffusersVAECodec(tiny_vae(seed), scaling_factor=1.0),
                          DDIMSchedule.stable_diffusion(num_steps))


def tiny_sdxl_cond(seed: int = 0) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    return Conditioning(torch.randn(1, 4, CONTEXT_DIM, generator=g), {"text_embeds": torch.randn(1, 1280, generator=g)})


def tiny_tokenizer_files(folder) -> None:
    """vocab.json and merges.txt of a CLIP tokenizer that spells words letter by letter (no merges)."""
    import json
    import pathlib
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch], vocab[ch + "</w>"] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def tiny_sdxl_pipeline(seed: int = 0):
    """A StableDiffusionXLPipeline of tiny random parts (two text encoders whose penultimate layers make
    the context, the second's projection the 1280-wide pooled prompt), for the loader's tests."""
    import tempfile

    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    words = tempfile.mkdtemp()
    tiny_tokenizer_files(words)
    tokenizer = CLIPTokenizer(f"{words}/vocab.json", f"{words}/merges.txt", pad_token="!", model_max_length=77)

    def text_config(projection):
        return CLIPTextConfig(vocab_size=3 + 2 * 26, hidden_size=CONTEXT_DIM // 2, intermediate_size=32,
                              num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                              projection_dim=projection, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    # four levels of two resnets, as SD's VAE (what single-file converters assume), 8x downscale
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,) * 4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=2, norm_num_groups=8, sample_size=64, force_upcast=True).eval()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(text_config(CONTEXT_DIM // 2)).eval(),
        text_encoder_2=CLIPTextModelWithProjection(text_config(1280)).eval(), tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=tiny_sdxl_unet(seed), scheduler=scheduler, add_watermarker=False)
