"""Controlled comparison for docs/real_speech.md: does the raw-waveform front end hold CTC
back on real speech? The same tiny CTC model, data and optimiser, with the conv feature
encoder either as it is (``--frontend conv``) or replaced by log-mel filterbanks (80 bins,
25 ms window, the encoder's 20 ms hop) and a linear layer (``--frontend fbank``). Prints the
training loss and the share of non-blank frames every 100 updates.

Usage:

    python scripts/frontend_probe.py --corpus DATA/speechocean762/splits --frontend fbank --steps 1500
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from unispeech import UniSpeechConfig, UniSpeechForCTC
from unispeech.data import UniSpeechDataModule
from unispeech.modeling.feature_encoder import conv_output_lengths


def mel_matrix(n_fft: int = 512, n_mels: int = 80, rate: int = 16_000) -> torch.Tensor:
    """Triangular mel filters (HTK mel scale) over the rfft bins: (n_mels, n_fft // 2 + 1)."""

    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    edges = hz(np.linspace(mel(20), mel(rate / 2), n_mels + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    bank = [np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None) for lo, c, hi in
            zip(edges[:-2], edges[1:-1], edges[2:])]  # fmt: skip
    return torch.tensor(np.stack(bank), dtype=torch.float32)


class FilterbankFrontend(torch.nn.Module):
    """(B, L) samples -> (B, C, T) features with exactly the conv encoder's frame count."""

    def __init__(self, config: UniSpeechConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mel", mel_matrix())
        self.register_buffer("window", torch.hann_window(400))
        self.proj = torch.nn.Linear(80, config.conv_dim[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = int(conv_output_lengths(torch.tensor(x.shape[1]), self.config))
        spec = torch.stft(x, 512, hop_length=320, win_length=400, window=self.window, center=False, return_complex=True)
        feats = torch.log(self.mel @ spec.abs().pow(2) + 1e-6)[..., :frames]  # (B, 80, T)
        feats = torch.nn.functional.pad(feats, (0, frames - feats.shape[-1]))
        feats = (feats - feats.mean(-1, keepdim=True)) / (feats.std(-1, keepdim=True) + 1e-5)
        return torch.nn.functional.gelu(self.proj(feats.transpose(1, 2))).transpose(1, 2)

    def freeze(self) -> None:  # the task API of FeatureEncoder
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="a corpus with train/ (e.g. the speechocean762 splits)")
    parser.add_argument("--frontend", choices=("conv", "fbank"), default="fbank")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = UniSpeechDataModule(corpus=args.corpus, locales=["en"], text_column="text", max_duration=12,
                               max_batch_seconds=12, val_splits=[], test_splits=[], num_workers=1)  # fmt: skip
    data.setup()
    config = UniSpeechConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        conv_dim=[32] * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=True,
        mask_time_prob=0.05,
        mask_time_min_masks=0,
        vocab_size=data.vocab_size,
        ctc_zero_infinity=True,
    )  # fmt: skip  (conf/model/tiny.yaml)
    model = UniSpeechForCTC(config).train()
    if args.frontend == "fbank":
        model.unispeech.feature_extractor = FilterbankFrontend(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98))
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 50))
    step, start, losses = 0, time.time(), []
    while step < args.steps:
        for batch in data.train_dataloader():
            out = model(batch["input_values"], attention_mask=batch["attention_mask"], labels=batch["labels"])
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step(), optimizer.zero_grad(), warmup.step()
            step, losses = step + 1, losses + [out.loss.item()]
            if step % 100 == 0:
                nonblank = (out.logits.argmax(-1) != 0).float().mean().item()
                print(f"{args.frontend} update {step}: loss {np.mean(losses[-100:]):.3f}, non-blank frames "
                      f"{nonblank:.2f}, {time.time() - start:.0f} s", flush=True)  # fmt: skip
            if step >= args.steps:
                break


if __name__ == "__main__":
    main()
