"""Clean-room PyTorch Sambert acoustic model (KAN-TTS `KanTtsSAMBERT`), inference only.

The network and its state_dict keys are those of KAN-TTS, so a released checkpoint loads as it is.
Inference is split into the pieces that are exported as separate graphs; the loops and the length
regulation are the caller's (see `models/reference.py` for the complete procedure):

    encode            ids, emotion, speaker, lengths -> per-phone features, pitch, energy
    duration_step     one step of the autoregressive duration predictor (loop over phones)
    round_durations   log-durations -> frames per phone and decoder band width     (host)
    regulate_lengths  frames per phone -> frame-level features, padded to a multiple of r (host)
    decoder_memory    LFR memory and the memory keys/values of every decoder layer
    decoder_step      one PNCA decoder step (r frames) with a key/value cache (loop over steps)
    postnet_fsmn      the postnet's FSMN layers (a fixed reach of earlier and later frames)
    postnet_lstm      the postnet's one-way LSTM and output layer, with its state in and out

The families differ only in sizes: an NSF voice (`NSF: True`) has num_mels = mel bins + 2 (its frames
end with the normalised f0 and the voicing, fed back to the decoder like the mel bins), and a personal
voice (`SE: True`) has no speaker table: its speaker input is the voice's speaker embedding (se.npy),
the same vector for every phone (`set_speaker_embedding`).

Batching follows each item's own length everywhere: padded phones and frames are masked so that
every item gets exactly what it gets when run alone, which is what KAN-TTS computes at batch 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from serving.symbols import STREAMS

LAYER_NORM_EPS = 1e-6
# Attention logits of blocked keys. It is the most negative fp16 number, so an fp16 graph keeps it
# finite, and exp(MASK_VALUE - max_logit) is exactly 0 in fp32 for any real logit, so the result
# equals KAN-TTS's -inf masking (and a fully blocked row gives a finite, discarded value, not NaN).
MASK_VALUE = -65504.0

# Fixed parts of the KAN-TTS architecture that its config does not expose.
ENCODER_FFN_KERNELS = (3, 1)
DECODER_FFN_KERNELS = (1, 1)
PROSODY_EMBEDDING_KERNEL = 9
DURATION_LSTM_LAYERS = 2
UNSUPPORTED_FEATURES = ("MAS", "FP", "using_byte")


class UnsupportedSambertConfig(ValueError):
    """The am config asks for a KAN-TTS feature this implementation does not have."""


class SambertInputError(ValueError):
    """Inputs that the acoustic model cannot take (shapes, lengths, scales)."""


# ----------------------------------------------------------------------------------------------
# Building blocks


def layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LAYER_NORM_EPS)


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """True at positions >= each item's length: bool [B, max_len]."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[B, L, H*dh] -> [B, H, L, dh]"""
    batch, length, width = x.shape
    return x.reshape(batch, length, n_heads, width // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, dh] -> [B, L, H*dh]"""
    batch, n_heads, length, d_head = x.shape
    return x.transpose(1, 2).reshape(batch, length, n_heads * d_head)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention; q [B,H,Lq,dh], k/v [B,H,Lk,dh], blocked bool [B,Lq|1,Lk]."""
    logits = torch.matmul(q, k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    logits = logits.masked_fill(blocked[:, None], MASK_VALUE)
    return torch.matmul(torch.softmax(logits, dim=-1), v)


def sinusoid_table(n_positions: int, depth: int, first: int = 0) -> torch.Tensor:
    """Rows first..n_positions-1 of KAN-TTS's text position table [rows, depth]: position p = row + 1,
    sin(p / 10000^(j / (depth/2 - 1))) for j < depth/2, then the cos of the same angles.

    Computed as KAN-TTS's `get_sinusoid_encoding_table` computes it, in numpy float64 with the rate of
    each dim from a scalar np.power, then rounded to float32, so every row is bit-equal to its table
    (KAN-TTS regrows the table with this formula when a sentence is longer than max_len)."""
    half = depth // 2
    rates = np.array([np.power(10000, j / float(depth / 2 - 1)) for j in range(half)])
    angles = np.arange(first + 1, n_positions + 1)[:, None] / rates[None, :]
    table = np.zeros((len(angles), depth))
    table[:, :half] = np.sin(angles)
    table[:, half:] = np.cos(angles)
    return torch.from_numpy(table.astype(np.float32))


class Prenet(nn.Module):
    """Linear+ReLU(+Dropout, off at inference) layers, then an optional plain Linear."""

    def __init__(self, in_dim: int, units: list[int], out_dim: int | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        for d_in, d_out in zip([in_dim] + units[:-1], units):
            layers += [nn.Linear(d_in, d_out), nn.ReLU(), nn.Dropout(0.5)]
        if out_dim:
            layers.append(nn.Linear(units[-1], out_dim))
        self.fcs = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fcs(x)


class ConvFeedForward(nn.Module):
    """Pre-LayerNorm position-wise conv FFN with a residual (`pos_ffn`)."""

    def __init__(self, dim: int, inner_dim: int, kernels: tuple[int, int]):
        super().__init__()
        self.w_1 = nn.Conv1d(dim, inner_dim, kernels[0], padding=(kernels[0] - 1) // 2)
        self.w_2 = nn.Conv1d(inner_dim, dim, kernels[1], padding=(kernels[1] - 1) // 2)
        self.layer_norm = layer_norm(dim)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        y = self.layer_norm(x)
        if pad is not None:
            # Padded rows must look like the conv's zero padding, as for an item run alone.
            y = y.masked_fill(pad[..., None], 0.0)
        y = self.w_2(F.relu(self.w_1(y.transpose(1, 2))))
        return x + y.transpose(1, 2)


class SelfAttention(nn.Module):
    """Pre-LayerNorm multi-head self-attention (`slf_attn`); residual only when widths match."""

    def __init__(self, n_heads: int, d_in: int, d_model: int):
        super().__init__()
        self.n_heads = n_heads
        self.layer_norm = layer_norm(d_in)
        self.w_qkv = nn.Linear(d_in, 3 * d_model)
        self.fc = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.n_heads) for t in self.w_qkv(self.layer_norm(x)).chunk(3, dim=-1))
        out = self.fc(merge_heads(attention(q, k, v, pad[:, None, :])))
        return out + x if out.shape[-1] == x.shape[-1] else out


class FftBlock(nn.Module):
    def __init__(self, n_heads: int, d_in: int, d_model: int, d_inner: int):
        super().__init__()
        self.slf_attn = SelfAttention(n_heads, d_in, d_model)
        self.pos_ffn = ConvFeedForward(d_model, d_inner, ENCODER_FFN_KERNELS)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = self.slf_attn(x, pad).masked_fill(pad[..., None], 0.0)
        return self.pos_ffn(x, pad).masked_fill(pad[..., None], 0.0)


class TextPositionTable(nn.Module):
    """The checkpoint's position table (max_len rows), and past it the rows KAN-TTS regrows the table with
    (`extend`; not a checkpoint tensor)."""

    def __init__(self, max_len: int, depth: int):
        super().__init__()
        self.register_buffer("position_enc", sinusoid_table(max_len, depth)[None])
        self.register_buffer("regrown", torch.zeros(1, 0, depth), persistent=False)

    @property
    def rows(self) -> int:
        return self.position_enc.shape[1] + self.regrown.shape[1]

    def extend(self, rows: int) -> None:
        """Cover `rows` positions."""
        if rows > self.rows:
            more = sinusoid_table(rows, self.position_enc.shape[2], first=self.rows).to(self.regrown.device)
            self.regrown = torch.cat([self.regrown, more[None]], dim=1)

    def forward(self, length: int) -> torch.Tensor:
        """The first `length` rows [1, length, depth]."""
        return torch.cat([self.position_enc, self.regrown], dim=1)[:, :length]


class LingEncoder(nn.Module):
    def __init__(self, p: dict):
        super().__init__()
        d_emb, d_model = p["embedding_dim"], p["encoder_num_units"]
        n_layers, n_heads = p["encoder_num_layers"], p["encoder_num_heads"]
        self.d_model = d_model
        self.fft = nn.ModuleList(
            FftBlock(n_heads, d_in, d_model, p["encoder_ffn_inner_dim"])
            for d_in in [d_emb] + [d_model] * (n_layers - 1)
        )
        self.ln = layer_norm(d_model)
        self.position_enc = TextPositionTable(p["max_len"], d_emb)

    def forward(self, emb: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = emb * self.d_model**0.5 + self.position_enc(emb.shape[1])
        for block in self.fft:
            x = block(x, pad)
        return self.ln(x)


class TextEncoder(nn.Module):
    def __init__(self, p: dict, vocab_sizes: dict[str, int]):
        super().__init__()
        d_emb = p["embedding_dim"]
        self.sy_emb = nn.Embedding(vocab_sizes["sy"], d_emb)
        self.tone_emb = nn.Embedding(vocab_sizes["tone"], d_emb)
        self.syllable_flag_emb = nn.Embedding(vocab_sizes["syllable_flag"], d_emb)
        self.ws_emb = nn.Embedding(vocab_sizes["word_segment"], d_emb)
        self.ling_enc = LingEncoder(p)
        self.ling_proj = nn.Linear(p["encoder_num_units"], p["encoder_projection_units"], bias=False)

    def forward(self, ids: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        emb = (
            self.sy_emb(ids[..., 0])
            + self.tone_emb(ids[..., 1])
            + self.syllable_flag_emb(ids[..., 2])
            + self.ws_emb(ids[..., 3])
        )
        return self.ling_proj(self.ling_enc(emb, pad))


class FeedForward(nn.Module):
    """FSMN feed-forward: 1x1 conv + ReLU, then a bias-free 1x1 conv."""

    def __init__(self, d_in: int, d_inner: int, d_out: int):
        super().__init__()
        self.w_1 = nn.Conv1d(d_in, d_inner, 1)
        self.w_2 = nn.Conv1d(d_inner, d_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.relu(self.w_1(x.transpose(1, 2)))).transpose(1, 2)


class MemoryBlock(nn.Module):
    """FSMN memory: a depthwise conv over time (window shifted left by `shift`) plus identity."""

    def __init__(self, dim: int, filter_size: int, shift: int):
        super().__init__()
        self.left = int(round((filter_size - 1) / 2)) + shift
        self.right = int((filter_size - 1) / 2) - shift
        self.conv_dw = nn.Conv1d(dim, dim, filter_size, groups=dim, bias=False)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = x.masked_fill(pad[..., None], 0.0)
        y = self.conv_dw(F.pad(x.transpose(1, 2), (self.left, self.right))).transpose(1, 2)
        return (y + x).masked_fill(pad[..., None], 0.0)


class Fsmn(nn.Module):
    def __init__(self, d_in: int, n_layers: int, d_memory: int, d_inner: int, filter_size: int, shift: int):
        super().__init__()
        self.ffn_lst = nn.ModuleList(
            FeedForward(d, d_inner, d_memory) for d in [d_in] + [d_memory] * (n_layers - 1)
        )
        self.memory_block_lst = nn.ModuleList(MemoryBlock(d_memory, filter_size, shift) for _ in range(n_layers))

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        for ffn, memory_block in zip(self.ffn_lst, self.memory_block_lst):
            m = memory_block(ffn(x), pad)
            x = m + x if m.shape[-1] == x.shape[-1] else m
        return x

    def context_frames(self) -> tuple[int, int]:
        """How many earlier and later input frames an output frame depends on (the stacked memory blocks' reach)."""
        blocks = self.memory_block_lst
        return sum(max(0, b.left) for b in blocks), sum(max(0, b.right) for b in blocks)


def roll_right_aligned(x: torch.Tensor, lengths: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Rotate each item [B,T,D] in time so its last valid step lands at T-1 (or undo that)."""
    steps = x.shape[1]
    t = torch.arange(steps, device=x.device)[None, :]
    source = (t - lengths[:, None]) % steps if inverse else (t + lengths[:, None]) % steps
    return torch.gather(x, 1, source[..., None].expand(-1, -1, x.shape[2]))


class FsmnBlstmPredictor(nn.Module):
    """Phone-level pitch or energy predictor: FSMN, then a BLSTM, then a linear head."""

    def __init__(self, d_in: int, p: dict):
        super().__init__()
        d_memory, lstm_units = p["predictor_num_memory_units"], p["predictor_lstm_units"]
        self.fsmn = Fsmn(
            d_in,
            p["predictor_fsmn_num_layers"],
            d_memory,
            p["predictor_ffn_inner_dim"],
            p["predictor_filter_size"],
            p["predictor_shift"],
        )
        self.blstm = nn.LSTM(d_memory, lstm_units, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * lstm_units, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = self.fsmn(x, pad)
        units = self.blstm.hidden_size
        # Like a packed sequence: the forward direction reads each item from its start (padding
        # comes after), the backward one must start at each item's own last phone, so it reads a
        # right-aligned copy. One LSTM call on both copies; each keeps the direction it is right for.
        both, _ = self.blstm(torch.cat([x, roll_right_aligned(x, lengths)], dim=0))
        forward_half = both[: x.shape[0], :, :units]
        backward_half = roll_right_aligned(both[x.shape[0] :, :, units:], lengths, inverse=True)
        out = self.fc(torch.cat([forward_half, backward_half], dim=-1))[..., 0]
        return out.masked_fill(pad, 0.0)


class DurationPredictor(nn.Module):
    """Autoregressive log(1 + frames) predictor over phones: prenet(previous) + cond -> LSTM -> fc."""

    def __init__(self, d_cond: int, prenet_units: list[int], lstm_units: int):
        super().__init__()
        self.prenet = Prenet(1, prenet_units)
        self.lstm = nn.LSTM(prenet_units[-1] + d_cond, lstm_units, num_layers=DURATION_LSTM_LAYERS, batch_first=True)
        self.fc = nn.Linear(lstm_units, 1)

    def forward(
        self, previous: torch.Tensor, cond: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = torch.cat([self.prenet(previous[:, None]), cond], dim=-1)[:, None]
        y, (h, c) = self.lstm(x, (h, c))
        return F.relu(self.fc(y[:, 0]))[:, 0], h, c


class DurationPositionEncoder(nn.Module):
    """Sinusoid of the 1-based frame index inside its phone; even dims sin, odd dims cos."""

    def __init__(self, depth: int):
        super().__init__()
        exponents = 2 * (torch.arange(depth, dtype=torch.float64) // 2) / depth
        self.register_buffer("inv_timescales", torch.pow(10000.0, exponents).float())

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        angles = positions[..., None] / self.inv_timescales
        even = torch.arange(angles.shape[-1], device=angles.device) % 2 == 0
        return torch.where(even, torch.sin(angles), torch.cos(angles))


class VarianceAdaptor(nn.Module):
    def __init__(self, p: dict):
        super().__init__()
        d_text = p["encoder_projection_units"]
        d_in = d_text + p["speaker_units"] + p["emotion_units"]
        self.pitch_predictor = FsmnBlstmPredictor(d_in, p)
        self.energy_predictor = FsmnBlstmPredictor(d_in, p)
        self.duration_predictor = DurationPredictor(d_in, p["dur_pred_prenet_units"], p["dur_pred_lstm_units"])
        self.dur_position_encoder = DurationPositionEncoder(d_text)
        kernel = PROSODY_EMBEDDING_KERNEL
        self.pitch_emb = nn.Conv1d(1, d_text, kernel, padding=(kernel - 1) // 2)
        self.energy_emb = nn.Conv1d(1, d_text, kernel, padding=(kernel - 1) // 2)


class PncaAttention(nn.Module):
    """Decoder attention: to earlier decoder steps (x) and to the text memory (h), both banded."""

    def __init__(self, n_heads: int, d_model: int, d_memory: int):
        super().__init__()
        self.n_heads = n_heads
        self.layer_norm = layer_norm(d_model)
        self.w_x_qkv = nn.Linear(d_model, 3 * d_model)
        self.fc_x = nn.Linear(d_model, d_model)
        self.w_h_kv = nn.Linear(d_memory, 2 * d_model)
        self.fc_h = nn.Linear(d_model, d_model)

    def memory_keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.w_h_kv(memory).chunk(2, dim=-1)
        return split_heads(k, self.n_heads), split_heads(v, self.n_heads)


class PncaBlock(nn.Module):
    def __init__(self, n_heads: int, d_model: int, d_memory: int, d_inner: int):
        super().__init__()
        self.pnca_attn = PncaAttention(n_heads, d_model, d_memory)
        self.pos_ffn = ConvFeedForward(d_model, d_inner, DECODER_FFN_KERNELS)

    def step(
        self,
        x: torch.Tensor,
        x_keys: torch.Tensor,
        x_values: torch.Tensor,
        memory_keys: torch.Tensor,
        memory_values: torch.Tensor,
        x_blocked: torch.Tensor,
        h_blocked: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B,1,D]; caches [B,H,S,dh] -> output [B,1,D] and the caches grown to S+1."""
        a = self.pnca_attn
        q, k, v = (split_heads(t, a.n_heads) for t in a.w_x_qkv(a.layer_norm(x)).chunk(3, dim=-1))
        x_keys = torch.cat([x_keys, k], dim=2)
        x_values = torch.cat([x_values, v], dim=2)
        out_x = a.fc_x(merge_heads(attention(q, x_keys, x_values, x_blocked)))
        out_h = a.fc_h(merge_heads(attention(q, memory_keys, memory_values, h_blocked)))
        return self.pos_ffn(out_x + out_h + x), x_keys, x_values


class MelDecoder(nn.Module):
    def __init__(self, p: dict, d_memory: int):
        super().__init__()
        d_model = p["decoder_num_units"]
        self.d_model = d_model
        self.n_heads = p["decoder_num_heads"]
        self.prenet = Prenet(p["num_mels"], p["decoder_prenet_units"], d_model)
        self.dec_in_proj = nn.Linear(d_memory + d_model, d_model)
        self.pnca = nn.ModuleList(
            PncaBlock(self.n_heads, d_model, d_memory, p["decoder_ffn_inner_dim"])
            for _ in range(p["decoder_num_layers"])
        )
        self.ln = layer_norm(d_model)
        self.dec_out_proj = nn.Linear(d_model, p["num_mels"] * p["outputs_per_step"])


class MelDecoderContainer(nn.Module):
    def __init__(self, p: dict, d_memory: int):
        super().__init__()
        self.mel_dec = MelDecoder(p, d_memory)


class PostNet(nn.Module):
    def __init__(self, p: dict):
        super().__init__()
        d_memory = p["postnet_num_memory_units"]
        self.fsmn = Fsmn(
            p["num_mels"],
            p["postnet_fsmn_num_layers"],
            d_memory,
            p["postnet_ffn_inner_dim"],
            p["postnet_filter_size"],
            p["postnet_shift"],
        )
        self.lstm = nn.LSTM(d_memory, p["postnet_lstm_units"], batch_first=True)
        self.fc = nn.Linear(p["postnet_lstm_units"], p["num_mels"])


# ----------------------------------------------------------------------------------------------
# The model


class KanTtsSambert(nn.Module):
    """KAN-TTS Sambert built from an am config's `Model.KanTtsSAMBERT.params` and vocabulary sizes."""

    def __init__(self, params: dict, vocab_sizes: dict[str, int]):
        super().__init__()
        asked = [name for name in UNSUPPORTED_FEATURES if params.get(name, False)]
        if asked:
            raise UnsupportedSambertConfig(
                f"am config enables {', '.join(asked)}; KAN-TTS's MAS, FP and byte-input Sambert variants "
                "are not supported (no ModelScope Sambert-HifiGan model uses them)"
            )
        streams = [s for s in STREAMS if not (s == "speaker" and params.get("SE", False))]
        missing = [s for s in streams if s not in vocab_sizes]
        if missing:
            raise UnsupportedSambertConfig(f"vocabulary sizes missing for {', '.join(missing)}")
        self.params = dict(params)
        self.max_len = params["max_len"]
        self.r = params["outputs_per_step"]
        self.num_mels = params["num_mels"]
        self.speaker_embedding_input = bool(params.get("SE", False))
        d_text = params["encoder_projection_units"]
        self.d_memory = d_text * self.r + params["speaker_units"] + params["emotion_units"]

        self.text_encoder = TextEncoder(params, vocab_sizes)
        if self.speaker_embedding_input:
            # Not a checkpoint tensor: the voice's se.npy, set by the loader.
            self.register_buffer("speaker_embedding", torch.zeros(params["speaker_units"]), persistent=False)
        else:
            self.spk_tokenizer = nn.Embedding(vocab_sizes["speaker"], params["speaker_units"])
        self.emo_tokenizer = nn.Embedding(vocab_sizes["emotion"], params["emotion_units"])
        self.variance_adaptor = VarianceAdaptor(params)
        self.mel_decoder = MelDecoderContainer(params, self.d_memory)
        self.mel_postnet = PostNet(params)

    # -- inputs --------------------------------------------------------------------------------

    @property
    def max_phones(self) -> int:
        """The longest phone sequence the text position table covers."""
        return self.text_encoder.ling_enc.position_enc.rows

    def extend_position_table(self, phones: int) -> None:
        """Cover sentences of up to `phones` phones: past max_len, with the rows KAN-TTS regrows its table with."""
        self.text_encoder.ling_enc.position_enc.extend(phones)

    def set_speaker_embedding(self, embedding: torch.Tensor) -> None:
        """A personal (SE) voice's speaker embedding [speaker_units], the row of its se.npy."""
        if not self.speaker_embedding_input:
            raise UnsupportedSambertConfig("this voice has a speaker table (SE is off): it takes speaker ids")
        if embedding.shape != self.speaker_embedding.shape:
            raise SambertInputError(f"speaker embedding of shape {list(embedding.shape)}, expected "
                                    f"{list(self.speaker_embedding.shape)} (speaker_units)")
        self.speaker_embedding.copy_(embedding)

    def speaker_hidden(self, speaker: torch.Tensor | None, shape: torch.Size) -> torch.Tensor:
        """Speaker features [B,T,S] of phones of `shape` [B,T]: the speaker table's rows, or for an SE voice
        its embedding on every phone (as ModelScope repeats se.npy per token; `speaker` is then unused)."""
        if self.speaker_embedding_input:
            return self.speaker_embedding.expand(*shape, -1)
        return self.spk_tokenizer(speaker)

    # -- encoder -----------------------------------------------------------------------------

    def encode(
        self, ids: torch.Tensor, emotion: torch.Tensor, speaker: torch.Tensor | None, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Text encoder, pitch and energy predictors.

        ids int64 [B,T,4] (sy, tone, syllable_flag, word_segment), emotion/speaker int64 [B,T]
        (speaker: None for an SE voice), lengths int64 [B]. Returns, in this order:
          text_aug      [B,T,P]      encoder output + pitch and energy embeddings
          duration_cond [B,T,P+S+E]  per-phone conditioning of the duration predictor
          speaker_hid   [B,T,S]      emotion_hid [B,T,E]
          pitch, energy [B,T]        phone-level predictions (0 on padding)
        """
        if ids.shape[1] > self.max_phones:
            raise SambertInputError(
                f"{ids.shape[1]} phones in one sentence; this voice takes at most {self.max_phones}"
            )
        pad = padding_mask(lengths, ids.shape[1])
        text_hid = self.text_encoder(ids, pad)
        speaker_hid = self.speaker_hidden(speaker, ids.shape[:2])
        emotion_hid = self.emo_tokenizer(emotion)
        va = self.variance_adaptor
        predictor_in = torch.cat([text_hid, speaker_hid, emotion_hid], dim=-1)
        pitch = va.pitch_predictor(predictor_in, lengths, pad)
        energy = va.energy_predictor(predictor_in, lengths, pad)
        # Zero predictions on padding act as the conv's own zero padding for each item.
        pitch_emb = va.pitch_emb(pitch[:, None]).transpose(1, 2)
        energy_emb = va.energy_emb(energy[:, None]).transpose(1, 2)
        text_aug = text_hid + pitch_emb + energy_emb
        duration_cond = torch.cat([text_aug, speaker_hid, emotion_hid], dim=-1)
        return text_aug, duration_cond, speaker_hid, emotion_hid, pitch, energy

    # -- duration predictor --------------------------------------------------------------------

    def initial_duration_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero LSTM state (h, c), each [layers, B, units], and the first step's input is 0."""
        lstm = self.variance_adaptor.duration_predictor.lstm
        shape = (lstm.num_layers, batch_size, lstm.hidden_size)
        return torch.zeros(shape), torch.zeros(shape)

    def duration_step(
        self, previous_log_duration: torch.Tensor, cond: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """previous log(1+frames) [B] (0 at the first phone), cond [B,D], state [layers,B,units]
        -> this phone's log(1+frames) [B] and the new state."""
        return self.variance_adaptor.duration_predictor(previous_log_duration, cond, h, c)

    # -- decoder -------------------------------------------------------------------------------

    def decoder_memory(
        self, lr_text: torch.Tensor, lr_speaker: torch.Tensor, lr_emotion: torch.Tensor, frame_positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frame-level inputs from `regulate_lengths` ([B, M*r, .] and positions [B, M*r]) ->
        memory [B,M,d_mem] and the memory keys/values of every decoder layer [layers,B,H,M,dh]."""
        batch, frames, d_text = lr_text.shape
        steps = frames // self.r
        text = lr_text + self.variance_adaptor.dur_position_encoder(frame_positions)
        # LFR: r consecutive frames side by side; speaker and emotion from each group's first frame.
        memory = torch.cat(
            [
                text.reshape(batch, steps, self.r * d_text),
                lr_speaker.reshape(batch, steps, self.r * lr_speaker.shape[-1])[..., : lr_speaker.shape[-1]],
                lr_emotion.reshape(batch, steps, self.r * lr_emotion.shape[-1])[..., : lr_emotion.shape[-1]],
            ],
            dim=-1,
        )
        keys, values = zip(*(block.pnca_attn.memory_keys_values(memory) for block in self.mel_decoder.mel_dec.pnca))
        return memory, torch.stack(keys), torch.stack(values)

    def empty_decoder_cache(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Key and value caches of no decoder steps yet: each [layers, B, H, 0, dh]."""
        dec = self.mel_decoder.mel_dec
        shape = (len(dec.pnca), batch_size, dec.n_heads, 0, dec.d_model // dec.n_heads)
        return torch.zeros(shape), torch.zeros(shape)

    def decoder_step(
        self,
        previous_frame: torch.Tensor,
        memory_step: torch.Tensor,
        x_keys: torch.Tensor,
        x_values: torch.Tensor,
        memory_keys: torch.Tensor,
        memory_values: torch.Tensor,
        x_band: torch.Tensor,
        h_band: torch.Tensor,
        memory_lengths: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One PNCA step s = the cache length S.

        previous_frame [B,num_mels] (last frame of step s-1, zeros at s=0), memory_step [B,d_mem]
        (memory[:, s]), caches [layers,B,H,S,dh], memory keys/values [layers,B,H,M,dh], int64 [B]:
        x_band, h_band and memory_lengths (each item's own M). Step s attends to decoder steps
        [s - x_band, s] and memory positions [s, min(s + h_band, M_i - 1)].
        Returns r frames [B, r*num_mels] and the caches grown to S+1.
        """
        dec = self.mel_decoder.mel_dec
        step = x_keys.shape[3]
        x_positions = torch.arange(step + 1, device=x_keys.device)[None, :]
        x_blocked = (x_positions < step - x_band[:, None])[:, None, :]
        h_positions = torch.arange(memory_keys.shape[3], device=memory_keys.device)[None, :]
        h_blocked = (
            (h_positions < step) | (h_positions > step + h_band[:, None]) | (h_positions >= memory_lengths[:, None])
        )[:, None, :]

        x = dec.dec_in_proj(torch.cat([memory_step, dec.prenet(previous_frame)], dim=-1))[:, None]
        x = x * dec.d_model**0.5
        new_keys, new_values = [], []
        for layer, block in enumerate(dec.pnca):
            x, k, v = block.step(
                x, x_keys[layer], x_values[layer], memory_keys[layer], memory_values[layer], x_blocked, h_blocked
            )
            new_keys.append(k)
            new_values.append(v)
        frames = dec.dec_out_proj(dec.ln(x))[:, 0]
        return frames, torch.stack(new_keys), torch.stack(new_values)

    # -- postnet -------------------------------------------------------------------------------

    # The postnet is an FSMN stack (a fixed reach of earlier and later frames, `postnet_context_frames`)
    # and a one-way LSTM, exported as two graphs: a frame range of the mel then needs only the decoder
    # frames within that reach and the LSTM state where the previous range ended, so it can be made in
    # pieces as the decoder goes (serving.runtime.acoustic) and equal the mel made at once.

    def postnet(self, decoder_frames: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """Decoder frames [B,F,num_mels] -> final mel [B,F,num_mels], zero past each item's length."""
        pad = padding_mask(frame_lengths, decoder_frames.shape[1])[..., None]
        h, c = self.initial_postnet_state(decoder_frames.shape[0])
        mel, _, _ = self.postnet_lstm(self.postnet_fsmn(decoder_frames, frame_lengths),
                                      decoder_frames.masked_fill(pad, 0.0), h, c)
        return mel.masked_fill(pad, 0.0)

    def postnet_fsmn(self, decoder_frames: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """Decoder frames [B,F,num_mels], each item zero past its length -> FSMN features [B,F,units]."""
        pad = padding_mask(frame_lengths, decoder_frames.shape[1])
        return self.mel_postnet.fsmn(decoder_frames.masked_fill(pad[..., None], 0.0), pad)

    def initial_postnet_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero LSTM state (h, c) of the postnet, each [1, B, units]."""
        shape = (1, batch_size, self.mel_postnet.lstm.hidden_size)
        return torch.zeros(shape), torch.zeros(shape)

    def postnet_lstm(
        self, features: torch.Tensor, decoder_frames: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """FSMN features [B,F,units] and the same decoder frames [B,F,num_mels], from LSTM state [1,B,units]
        -> mel [B,F,num_mels] and the state after the last frame."""
        net = self.mel_postnet
        residual, (h, c) = net.lstm(features, (h, c))
        return net.fc(residual) + decoder_frames, h, c

    def postnet_context_frames(self) -> tuple[int, int]:
        """How many earlier and later decoder frames the FSMN part needs for one mel frame."""
        return self.mel_postnet.fsmn.context_frames()


# ----------------------------------------------------------------------------------------------
# Host-side steps between the graphs


def predict_log_durations(model: KanTtsSambert, duration_cond: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The duration predictor's loop over phones: log(1+frames) [B,T], 0 on padding."""
    batch, phones = duration_cond.shape[:2]
    h, c = model.initial_duration_state(batch)
    log_duration = torch.zeros(batch)
    steps = []
    for i in range(phones):
        log_duration, h, c = model.duration_step(log_duration, duration_cond[:, i], h, c)
        steps.append(log_duration)
    return torch.stack(steps, dim=1).masked_fill(padding_mask(lengths, phones), 0.0)


def round_durations(
    log_durations: torch.Tensor,
    lengths: torch.Tensor,
    outputs_per_step: int,
    duration_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log(1+frames) [B,T] -> frames per phone int64 [B,T] (0 on padding) and band width int64 [B].

    KAN-TTS: d = exp(log_dur) - 1, frames = long(d + 0.5), band = int(max(d) / r + 0.5), with the
    unrounded d. `duration_scale` [B] (default 1) multiplies d first; 1.0 leaves it untouched.
    """
    durations = (torch.exp(log_durations) - 1).masked_fill(padding_mask(lengths, log_durations.shape[1]), 0.0)
    if duration_scale is not None:
        durations = durations * duration_scale[:, None]
    frames = (durations + 0.5).long()
    band = (durations.max(dim=1).values / outputs_per_step + 0.5).long()
    return frames, band


def regulate_lengths(
    frames_per_phone: torch.Tensor,
    text_aug: torch.Tensor,
    speaker_hid: torch.Tensor,
    emotion_hid: torch.Tensor,
    outputs_per_step: int,
) -> tuple[torch.Tensor, ...]:
    """Repeat each phone's features over its frames.

    Returns lr_text, lr_speaker, lr_emotion [B,F,.] (zero past each item's frames), the 1-based
    frame index inside its phone [B,F] float (0 past each item's frames) and frame_lengths [B].
    F is the longest item's frame count rounded up to a multiple of outputs_per_step.
    """
    frame_lengths = frames_per_phone.sum(dim=1)
    total = int(frame_lengths.max()) if frame_lengths.numel() else 0
    padded = -(-total // outputs_per_step) * outputs_per_step
    ends = torch.cumsum(frames_per_phone, dim=1)
    frame = torch.arange(padded)[None, :].expand(frames_per_phone.shape[0], -1).contiguous()
    valid = frame < frame_lengths[:, None]
    phone = torch.searchsorted(ends, frame, right=True).clamp(max=frames_per_phone.shape[1] - 1)
    starts = torch.gather(ends - frames_per_phone, 1, phone)
    positions = torch.where(valid, frame - starts + 1, 0).float()

    def repeat(features: torch.Tensor) -> torch.Tensor:
        picked = torch.gather(features, 1, phone[..., None].expand(-1, -1, features.shape[2]))
        return picked.masked_fill(~valid[..., None], 0.0)

    return repeat(text_aug), repeat(speaker_hid), repeat(emotion_hid), positions, frame_lengths


# ----------------------------------------------------------------------------------------------
# Random weights for fixtures


def set_duration_bias(model: KanTtsSambert, frames_per_phone: float) -> None:
    """Set the duration head's bias so a random model predicts about `frames_per_phone` per phone.

    The head is relu(fc(h)) = log(1 + frames), so with fc's weight term small the frames are
    exp(bias) - 1 = frames_per_phone, give or take the spread that term adds.
    """
    fc = model.variance_adaptor.duration_predictor.fc
    with torch.no_grad():
        fc.bias.fill_(math.log1p(frames_per_phone))


# Random LSTM states vary little from phone to phone; this gain on the duration head's weights turns
# that into a realistic spread (about 3-9 frames per phone around 5 for the 16k config).
FIXTURE_DURATION_WEIGHT_GAIN = 20.0
FIXTURE_CALIBRATION_SHAPE = (4, 32)  # items x phones of random text used to centre the durations
FIXTURE_CALIBRATION_ROUNDS = 3


def init_for_fixture(model: KanTtsSambert, seed: int, frames_per_phone: float = 5.0) -> KanTtsSambert:
    """Deterministic random weights for test fixtures (the global RNG is left as it was).

    Every learnt layer gets PyTorch's default init from `seed`, LayerNorms get a random gain and
    bias around (1, 0) so that padding leaks would show; the fixed position tables keep their
    formula values. The duration head is then centred on random text so that the model predicts
    about `frames_per_phone` frames per phone on average, with a realistic spread. An NSF model's
    f0 and voicing outputs are then scaled into a voice's range (`_shape_nsf_outputs`). An SE model's
    speaker embedding must be set before (it conditions the durations).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Embedding, nn.LSTM)):
                module.reset_parameters()
            elif isinstance(module, nn.LayerNorm):
                with torch.no_grad():
                    module.weight.copy_(1 + 0.1 * torch.randn_like(module.weight))
                    module.bias.copy_(0.1 * torch.randn_like(module.bias))
        calibration = _random_text(model, FIXTURE_CALIBRATION_SHAPE)
    fc = model.variance_adaptor.duration_predictor.fc
    was_training = model.training
    model.eval()
    with torch.no_grad():
        fc.weight.mul_(FIXTURE_DURATION_WEIGHT_GAIN)
        set_duration_bias(model, frames_per_phone)
        lengths = torch.full((FIXTURE_CALIBRATION_SHAPE[0],), FIXTURE_CALIBRATION_SHAPE[1])
        duration_cond = model.encode(*calibration, lengths)[1]
        # The predicted durations feed back into the LSTM, so centring takes a few rounds.
        for _ in range(FIXTURE_CALIBRATION_ROUNDS):
            mean = predict_log_durations(model, duration_cond, lengths).mean()
            fc.bias.add_(math.log1p(frames_per_phone) - mean)
        if model.params.get("NSF", False):
            _shape_nsf_outputs(model)
    model.train(was_training)
    return model


# An NSF model's last two outputs of a frame are the normalised f0 and the voicing (voiced at >= 0.6).
# Random weights put both near 0 with a wide spread; these centre them where a voice has them (f0 about
# 0.25: some 200 Hz under either f0 normalisation of the fixtures) with a spread that makes some frames
# unvoiced, and make the postnet's correction of them small.
FIXTURE_NSF_OUTPUT_GAIN = 0.3
FIXTURE_NSF_F0_BIAS = 0.25
FIXTURE_NSF_UV_BIAS = 0.6
FIXTURE_NSF_POSTNET_GAIN = 0.1


def _shape_nsf_outputs(model: KanTtsSambert) -> None:
    n, r = model.num_mels, model.r
    projection = model.mel_decoder.mel_dec.dec_out_proj
    rows = [step * n + column for step in range(r) for column in (n - 2, n - 1)]
    projection.weight[rows] *= FIXTURE_NSF_OUTPUT_GAIN
    projection.bias[rows] = torch.tensor([FIXTURE_NSF_F0_BIAS, FIXTURE_NSF_UV_BIAS] * r)
    postnet_fc = model.mel_postnet.fc
    postnet_fc.weight[n - 2 :] *= FIXTURE_NSF_POSTNET_GAIN
    postnet_fc.bias[n - 2 :] = 0.0


def _random_text(model: KanTtsSambert, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Random real-symbol ids (ids [B,T,4], emotion, speaker; speaker None for an SE model)."""
    enc = model.text_encoder
    tables = [enc.sy_emb.num_embeddings, enc.tone_emb.num_embeddings, enc.syllable_flag_emb.num_embeddings,
              enc.ws_emb.num_embeddings, model.emo_tokenizer.num_embeddings,
              0 if model.speaker_embedding_input else model.spk_tokenizer.num_embeddings]
    # The last rows of every table are "_", "~" and possibly "@[MASK]", which text never holds.
    ids = [torch.randint(0, max(rows - 3, 1), shape) for rows in tables]
    return torch.stack(ids[:4], dim=-1), ids[4], None if model.speaker_embedding_input else ids[5]
