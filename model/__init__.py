"""Llama 2 model, tokenizer + chat format, and checkpoint IO. torch, sentencepiece and safetensors only."""

from model.args import SIZES, ModelArgs
from model.checkpoint import load_pretrained, save_pretrained
from model.hf_format import CheckpointError, hf_state_dict, load_hf_state_dict
from model.meta_format import export_meta_checkpoint
from model.transformer import ScalarModel, Transformer, param_count
from model.tokenizer import Tokenizer, train_tokenizer
from model.chat import ChatFormatError, EncodedDialog, encode_dialog

__all__ = [
    "SIZES",
    "CheckpointError",
    "ChatFormatError",
    "EncodedDialog",
    "ModelArgs",
    "ScalarModel",
    "Tokenizer",
    "Transformer",
    "encode_dialog",
    "export_meta_checkpoint",
    "hf_state_dict",
    "load_hf_state_dict",
    "load_pretrained",
    "param_count",
    "save_pretrained",
    "train_tokenizer",
]
