"""The training loop: random crops, per-sample quality levels, LiDAR dropout, resumable checkpoints.

Checkpoints are ``<out>.ckpt.safetensors`` (model and optimizer tensors, torch RNG) plus
``<out>.ckpt.json`` (step, config, NumPy RNG state, optimizer hyper-parameters); never pickles. The
final model is exported with :func:`xmodal_compress_ros.codec.model_io.save_model` after computing
the integer entropy tables.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from xmodal_compress_ros.codec.models import DEFAULT_LAMBDAS, HyperpriorCodec, get_model_class
from xmodal_compress_ros.errors import ModelFileError
from xmodal_compress_ros.train.crops import FrameBank
from xmodal_compress_ros.train.losses import colour_randomised_target, rd_loss

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored in checkpoints and model metadata).

    ``init_from``: a model file stem; a twin initialises a LiDAR model's backbone (extra inputs at
    zero), a model of the same architecture continues from its weights (fresh optimizer).
    ``lidar_dropout``: probability that the decoder side of a sample sees the zeros map (half of
    those samples lose the map at the encoder too). ``alpha``: initial weight of the P2I loss,
    annealed linearly to 0 over the run; ``prediction_loss``: which P2I loss it weighs
    (``losses.PREDICTION_LOSSES``). The learning rate drops tenfold for the last 10% of steps.
    ``device``: 'cpu' or a CUDA device; on CUDA the frames stay resident on the GPU, TF32 is on, and
    ``amp='bf16'`` runs the transforms under bfloat16 autocast (the rate terms stay float32).
    ``post_filter``: (channels, blocks) of the decoder-side post filter, (0, 0) for none.
    ``train_only``: train only the parameters whose names start with this prefix, or with one of
    several comma-separated prefixes (e.g. ``'post_filter'``, or the decoder's own
    ``'g_s.,post_filter.,gain.log_gain_dec'``, after ``init_from`` a trained codec); the rest stays
    frozen, so the bits do not change.
    ``train_qualities``: sample only these quality levels (empty: all). With ``init_from`` a model of
    other lambdas, ``train_only='gain.'`` and the new levels here, only the new levels' gains train
    (the others get no gradient, so Adam leaves them unchanged): how quality levels are added.
    """

    arch: str = 'xmodal-hyperprior'
    out: str = 'models/xmodal-hyperprior'
    steps: int = 1000
    batch_size: int = 8
    crop: int = 128
    lr: float = 3e-4
    N: int = 48
    M: int = 128
    Nz: int = 64
    hyper_hidden: int = 64
    lambdas: Tuple[float, ...] = DEFAULT_LAMBDAS
    fusion: str = 'concat'
    conditioning: str = 'lidar'
    hyper_refiner: bool = True
    lidar_dropout: float = 0.1
    alpha: float = 5.0
    prediction_loss: str = 'affine'
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    seed: int = 0
    threads: int = 2
    init_from: Optional[str] = None
    resume: bool = False
    data: Tuple[str, ...] = ()
    device: str = 'cpu'
    amp: str = 'none'
    post_filter: Tuple[int, int] = (0, 0)
    train_only: str = ''
    train_qualities: Tuple[int, ...] = ()

    def model_kwargs(self) -> Dict:
        kwargs = dict(N=self.N, M=self.M, Nz=self.Nz, hyper_hidden=self.hyper_hidden, lambdas=self.lambdas,
                      post_filter=self.post_filter)
        if get_model_class(self.arch).uses_lidar:
            kwargs.update(fusion=self.fusion, conditioning=self.conditioning,
                          hyper_refiner=self.hyper_refiner)
        return kwargs

    def to_json(self) -> Dict:
        d = dataclasses.asdict(self)
        d['lambdas'] = list(self.lambdas)
        d['data'] = list(self.data)
        d['post_filter'] = list(self.post_filter)
        d['train_qualities'] = list(self.train_qualities)
        return d


def build_model(config: TrainConfig) -> HyperpriorCodec:
    """A fresh model, or one initialised from ``config.init_from`` (its quality levels resampled to
    ``config.lambdas`` when they differ, see :meth:`HyperpriorCodec.with_lambdas`)."""
    if not config.init_from:
        return get_model_class(config.arch)(**config.model_kwargs())
    from xmodal_compress_ros.codec.model_io import load_model

    source = load_model(config.init_from)
    if source.lambdas != tuple(config.lambdas):
        source = source.with_lambdas(config.lambdas)
    planes = source.config.get('quality_planes')
    model = get_model_class(config.arch)(**config.model_kwargs(), quality_planes=planes)
    if type(source) is type(model):
        _load_backbone(model, source)
    elif hasattr(model, 'init_from_twin') and not source.uses_lidar:
        model.init_from_twin(source)
    elif hasattr(model, 'init_from_intra') and source.condition_name is None:
        model.init_from_intra(source)
    else:
        raise ModelFileError(f'cannot initialise {config.arch} from {config.init_from} '
                             f'({source.registry_name}): give a twin or a model of the same architecture')
    return model


def _load_backbone(model: HyperpriorCodec, source: HyperpriorCodec) -> None:
    """Copy ``source``'s weights; a post filter that ``source`` lacks keeps its identity start, and
    residual blocks added to ``source``'s filter start as identities, so step 0 decodes as ``source``.
    A post filter of other channels starts afresh; one of fewer blocks keeps the first blocks (the fast
    tier's filter, docs/tiers.md)."""
    state = source.state_dict()
    if _filter_channels(model) != _filter_channels(source):
        state = {k: v for k, v in state.items() if not k.startswith('post_filter.')}
    elif model.post_filter is not None:
        # A shallower filter keeps the first blocks of the deeper one (with its head and tail).
        own = model.state_dict()
        state = {k: v for k, v in state.items() if not k.startswith('post_filter.body.') or k in own}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a tensor of another shape
        raise ModelFileError(f'cannot initialise from a model of other sizes: {error}') from None
    if unexpected or any(not name.startswith('post_filter.') for name in missing):
        raise ModelFileError(f'cannot initialise from a model with other tensors (missing {missing[:3]}, '
                             f'unexpected {unexpected[:3]}): give the same N, M, Nz and post filter')
    if missing and 'post_filter.tail.weight' not in missing:
        # Only added residual blocks are missing: a zero second convolution makes each an identity.
        for name in missing:
            if '.conv2.' in name:
                torch.nn.init.zeros_(model.get_parameter(name))


def _filter_channels(model: HyperpriorCodec) -> int:
    return 0 if model.post_filter is None else model.post_filter.head.out_channels


def trainable_parameters(model: HyperpriorCodec, prefix: str) -> List[torch.nn.Parameter]:
    """The parameters named ``prefix``* (all when ``prefix`` is empty; ``prefix`` may list several,
    comma-separated); the others are frozen."""
    prefixes = tuple(prefix.split(','))
    if prefix and '' in prefixes:
        raise ValueError(f'train_only {prefix!r} has an empty prefix, which would train every parameter')
    chosen = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(prefixes))
        if parameter.requires_grad:
            chosen.append(parameter)
    if not chosen:
        raise ValueError(f'train_only {prefix!r} matches no parameter of {model.registry_name} '
                         '(a post filter needs post_filter=(channels, blocks))')
    return chosen


def _training_levels(config: TrainConfig, model: HyperpriorCodec) -> np.ndarray:
    """The quality levels training samples from: ``config.train_qualities``, or all."""
    levels = np.array(config.train_qualities or range(model.quality_levels), dtype=np.int64)
    if levels.min() < 0 or levels.max() >= model.quality_levels:
        raise ValueError(f'train_qualities {list(config.train_qualities)} out of range '
                         f'0..{model.quality_levels - 1}')
    return levels


def _lr_at(config: TrainConfig, step: int) -> float:
    return config.lr * (0.1 if step >= int(0.9 * config.steps) else 1.0)


def _alpha_at(config: TrainConfig, step: int) -> float:
    return config.alpha * max(0.0, 1.0 - step / max(config.steps, 1))


def _lidar_dropout(depth: torch.Tensor, p: float, rng: np.random.Generator):
    """(encoder map, decoder map or None when equal)."""
    if p <= 0:
        return depth, None
    b = depth.shape[0]
    drop_dec = rng.random(b) < p
    drop_enc = drop_dec & (rng.random(b) < 0.5)
    enc = depth * _keep_mask(drop_enc, depth.device)
    if not drop_dec.any():
        return enc, None
    return enc, depth * _keep_mask(drop_dec, depth.device)


def _keep_mask(drop: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(~drop).float().to(device)[:, None, None, None]


def _setup_device(config: TrainConfig) -> torch.device:
    """The training device, with TF32 and cuDNN autotuning on CUDA (stable for these convolutions)."""
    device = torch.device(config.device)
    if config.amp not in ('none', 'bf16'):
        raise ValueError(f"amp must be 'none' or 'bf16', got {config.amp!r}")
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'device {config.device!r} asked for, but this torch has no CUDA device')
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    elif config.amp != 'none':
        raise ValueError('amp=bf16 is for CUDA training; on the CPU train in float32')
    return device


def train(config: TrainConfig, bank: FrameBank, progress: bool = True,
          metadata: Optional[Dict] = None) -> HyperpriorCodec:
    """Train (or resume) and export ``config.out``.safetensors/.json; returns the trained model."""
    from tqdm import tqdm

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = _setup_device(config)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = build_model(config).to(device)
    parameters = trainable_parameters(model, config.train_only)
    levels = _training_levels(config, model)
    optimizer = torch.optim.Adam(parameters, lr=config.lr)
    step = 0
    if config.resume and _checkpoint_paths(out)[0].exists():
        step, rng = load_checkpoint(out, model, optimizer)
    frames = bank if device.type == 'cpu' else bank.resident(str(device))
    lambdas = torch.tensor(model.lambdas, device=device)
    model.train()
    bar = tqdm(total=config.steps, initial=step, disable=not progress, unit='step', smoothing=0.05)
    start, first_step = time.time(), step
    sums: Dict[str, torch.Tensor] = {}  # loss terms since the last log line (no progress bar)
    logged = step
    while step < config.steps:
        for group in optimizer.param_groups:
            group['lr'] = _lr_at(config, step)
        x, depth, bank_levels = frames.sample(config.batch_size, config.crop, rng)
        quality = torch.from_numpy(levels[rng.integers(len(levels), size=config.batch_size)]).to(device)
        # A reference decoded at one level trains the P-frame codec at that level, as a stream codes it.
        quality = torch.where(bank_levels >= 0, bank_levels, quality)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp == 'bf16'):
            result, target = _forward(model, x, depth, quality, config, rng)
        terms = rd_loss(x, _float32(result), lambdas[quality], _alpha_at(config, step), target,
                        config.prediction_loss)
        optimizer.zero_grad(set_to_none=True)
        terms['loss'].backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        step += 1
        bar.update(1)
        if step % 10 == 0:  # reading the values waits for the GPU: not every step
            bar.set_postfix({k: f'{float(v.detach()):.4g}' for k, v in terms.items()})
        if not progress:  # logs and nohup runs still see how training goes
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value.detach()
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_checkpoint(out, model, optimizer, step, rng, config)
            if not progress:
                rate = _steps_per_second(step - first_step, time.time() - start)
                _log_terms(step, config.steps, sums, step - logged, rate)
                sums, logged = {}, step
    bar.close()
    elapsed = time.time() - start
    speed = {'steps_per_second_last_session': round(_steps_per_second(step - first_step, elapsed), 3),
             'device': str(device)}
    export(model.cpu(), config, bank, step, elapsed, dict(metadata or {}, **{'training_speed': speed}))
    return model


def export_checkpoint(config: TrainConfig) -> HyperpriorCodec:
    """Export ``config.out``'s latest checkpoint as a model file (a run stopped before its last step).

    The checkpoint holds no frame list: the metadata names the run's data sources (``config.data``).
    """
    out = Path(config.out)
    if not _checkpoint_paths(out)[0].exists():
        raise ModelFileError(f'no checkpoint {_checkpoint_paths(out)[0]} to export')
    model = build_model(config)
    parameters = trainable_parameters(model, config.train_only)
    step, _ = load_checkpoint(out, model, torch.optim.Adam(parameters, lr=config.lr))
    from xmodal_compress_ros.train.crops import FrameBank

    export(model, config, FrameBank(), step, 0.0, {'training_stopped_at_step': step})
    return model


def _steps_per_second(steps: int, seconds: float) -> float:
    return steps / max(seconds, 1e-9)


def _log_terms(step: int, steps: int, sums: Dict[str, torch.Tensor], count: int, rate: float) -> None:
    """One line of the loss terms averaged over the ``count`` steps since the previous line."""
    means = ' '.join(f'{k}={float(v) / count:.4g}' for k, v in sums.items())
    print(f'step {step}/{steps} {rate:.2f} step/s: {means}', flush=True)


def _forward(model: HyperpriorCodec, x: torch.Tensor, depth: torch.Tensor, quality: torch.Tensor,
             config: TrainConfig, rng: np.random.Generator):
    """(model output, P2I target or None) for one batch. Conditioned models lose their map (LiDAR scan
    or reference frame) with ``config.lidar_dropout``, so that they learn to decode without it."""
    if model.condition_name is None:
        return model(x, None, quality), None
    depth, depth_dec = _lidar_dropout(depth, config.lidar_dropout, rng)
    target = colour_randomised_target(x) if model.uses_lidar else None
    return model(x, depth, quality, depth_dec=depth_dec), target


def _float32(result):
    """Under bf16 autocast the reconstruction and likelihoods come back in bf16: score them in fp32."""
    prediction = None if result.prediction is None else result.prediction.float()
    return dataclasses.replace(result, x_hat=result.x_hat.float(), prediction=prediction,
                               likelihoods={k: v.float() for k, v in result.likelihoods.items()})


def export(model: HyperpriorCodec, config: TrainConfig, bank: FrameBank, step: int, elapsed_s: float,
           metadata: Optional[Dict] = None) -> None:
    """Compute the integer tables and write the model file with its training record."""
    from xmodal_compress_ros.codec.model_io import save_model

    model.eval()
    model.update()
    meta = {
        'training': {
            'steps': step,
            'config': config.to_json(),
            'frames': list(bank.names),
            'sources': list(config.data),
            'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'wall_seconds_last_session': round(elapsed_s, 1),
        },
    }
    if config.init_from:
        meta['history'] = training_history(config.init_from)
    meta.update(metadata or {})
    save_model(model, config.out, meta)


def training_history(stem: str) -> List[Dict]:
    """The training runs behind model ``stem``, newest first: its own, then those it started from.

    Each entry: ``model_id``, ``training`` (that run's record) and ``training_speed`` when known.
    """
    from xmodal_compress_ros.codec.model_io import earlier_runs, read_metadata

    meta = read_metadata(stem)
    own = {key: meta[key] for key in ('model_id', 'training', 'training_speed') if key in meta}
    return [own] + earlier_runs(meta)


def _checkpoint_paths(out: Path) -> Tuple[Path, Path]:
    return out.with_name(out.name + '.ckpt.safetensors'), out.with_name(out.name + '.ckpt.json')


def save_checkpoint(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    rng: np.random.Generator, config: TrainConfig) -> None:
    """Write a resumable checkpoint (tensors in safetensors, scalars in JSON), atomically."""
    from safetensors.torch import save_file

    tensors = {'model.' + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    for idx, state in opt_state['state'].items():
        for key, value in state.items():
            tensors[f'optim.{idx}.{key}'] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors['rng.torch'] = torch.get_rng_state()
    scalars = {
        'checkpoint_version': CHECKPOINT_VERSION,
        'step': step,
        'arch': config.arch,
        'config': config.to_json(),
        'numpy_rng': rng.bit_generator.state,
        'param_groups': opt_state['param_groups'],
    }
    tensor_path, json_path = _checkpoint_paths(out)
    save_file(tensors, str(tensor_path) + '.tmp')
    Path(str(tensor_path) + '.tmp').replace(tensor_path)
    json_path.with_suffix('.tmp').write_text(json.dumps(scalars, indent=1))
    json_path.with_suffix('.tmp').replace(json_path)


def load_checkpoint(out: Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> Tuple[int, np.random.Generator]:
    """Restore model, optimizer and RNG states; returns (step, NumPy generator)."""
    from safetensors.torch import load_file

    tensor_path, json_path = _checkpoint_paths(out)
    scalars = json.loads(json_path.read_text())
    if scalars.get('checkpoint_version') != CHECKPOINT_VERSION:
        raise ModelFileError(f'{json_path}: checkpoint version {scalars.get("checkpoint_version")} '
                             f'unsupported (expected {CHECKPOINT_VERSION}): start without --resume')
    if scalars['arch'] != model.registry_name:
        raise ModelFileError(f'{json_path}: checkpoint of {scalars["arch"]}, training {model.registry_name}: '
                             'use the same --arch or another --out')
    tensors = load_file(str(tensor_path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith('model.')})
    state: Dict[int, Dict] = {}
    for key, value in tensors.items():
        if key.startswith('optim.'):
            _, idx, name = key.split('.', 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({'state': state, 'param_groups': scalars['param_groups']})
    torch.set_rng_state(tensors['rng.torch'])
    rng = np.random.default_rng()
    rng.bit_generator.state = scalars['numpy_rng']
    return int(scalars['step']), rng
