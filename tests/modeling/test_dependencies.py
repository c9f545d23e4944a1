"""The model package stays torch-only: importing it pulls in no training or data framework."""

import subprocess
import sys

FORBIDDEN = ["lightning", "pytorch_lightning", "hydra", "omegaconf", "datasets", "soundfile", "transformers"]


def test_modeling_imports_without_lightning_hydra_datasets_or_soundfile():
    # make every forbidden package unimportable, then import the model and run it
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {FORBIDDEN!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import torch
import unispeech
from unispeech.modeling import UniSpeechConfig, UniSpeechForPreTraining
cfg = UniSpeechConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32,
                      conv_dim=(8,) * 7, num_conv_pos_embedding_groups=4, num_conv_pos_embeddings=8,
                      codevector_dim=8, proj_codevector_dim=8, num_codevectors_per_group=4)
out = UniSpeechForPreTraining(cfg)(torch.randn(1, 8000))
assert torch.isfinite(out.loss)
print("ok", sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok []"
