"""``xmodal train``: train a codec on camera+LiDAR frames and export a model file."""
HELP = 'train a learned image codec (image-only twin or LiDAR-conditioned) and export its model file'


def add_arguments(parser) -> None:
    from xmodal_compress_ros.train.loop import TrainConfig
    from xmodal_compress_ros.train.losses import PREDICTION_LOSSES

    d = TrainConfig()
    parser.add_argument('--arch', default=d.arch,
                        help='registered architecture: xmodal-hyperprior | xmodal-lidar | xmodal-pframe')
    parser.add_argument('--data', action='append', default=[], metavar='KIND:LOCATION', required=True,
                        help='training source, repeatable: kitti-object:DIR, kitti-raw:DRIVE_DIR,CALIB_DIR, '
                             'synthetic:DIR, bag:PATH, photos:DIR (no LiDAR); for xmodal-pframe also '
                             'synthetic-drive:SEED,FRAMES (consecutive pairs; other sources give '
                             're-rendered stills)')
    parser.add_argument('--out', required=True, help='model file stem, e.g. models/xmodal-lidar')
    parser.add_argument('--steps', type=int, default=d.steps)
    parser.add_argument('--batch-size', type=int, default=d.batch_size)
    parser.add_argument('--crop', type=int, default=d.crop, help='square crop size in pixels')
    parser.add_argument('--lr', type=float, default=d.lr)
    parser.add_argument('--N', type=int, default=d.N, help='transform channels')
    parser.add_argument('--M', type=int, default=d.M, help='latent channels')
    parser.add_argument('--fusion', default=d.fusion, choices=('concat', 'mmfft'))
    parser.add_argument('--conditioning', default=d.conditioning, choices=('lidar', 'zeros'))
    parser.add_argument('--no-hyper-refiner', action='store_true', help='do not refine the means with LiDAR')
    parser.add_argument('--lidar-dropout', type=float, default=d.lidar_dropout)
    parser.add_argument('--alpha', type=float, default=d.alpha,
                        help='initial P2I loss weight (annealed to 0)')
    parser.add_argument('--prediction-loss', default=d.prediction_loss, choices=tuple(PREDICTION_LOSSES),
                        help='P2I loss: affine-invariant MSE, or var(t)(1-|r|), whose gradient does not '
                             'vanish for an uncorrelated prediction (docs/method.md, P2I)')
    parser.add_argument('--checkpoint-every', type=int, default=d.checkpoint_every)
    parser.add_argument('--seed', type=int, default=d.seed)
    parser.add_argument('--threads', type=int, default=d.threads, help='torch CPU threads')
    parser.add_argument('--device', default=d.device,
                        help='cpu, cuda or cuda:N (on CUDA the frames stay on the GPU and TF32 is on)')
    parser.add_argument('--amp', default=d.amp, choices=('none', 'bf16'),
                        help='bfloat16 autocast for the transforms (CUDA only)')
    parser.add_argument('--max-frames', type=int, default=0, help='use at most this many frames per source')
    parser.add_argument('--init-from', default=None, help='model file stem: a twin, or the same architecture')
    parser.add_argument('--post-filter', default='0,0', metavar='CHANNELS,BLOCKS',
                        help='decoder-side post filter after g_s (e.g. 32,4); 0,0 for none')
    parser.add_argument('--train-only', default='', metavar='PREFIX[,PREFIX...]',
                        help='train only parameters named PREFIX* (e.g. post_filter, or the decoder side: '
                             'g_s.,post_filter.,gain.log_gain_dec), the rest frozen')
    parser.add_argument('--lambdas', default=None, metavar='L0,L1,...',
                        help='rate-distortion lambda of each quality level, increasing (default: the '
                             '--init-from model\'s, else ' + ','.join(str(v) for v in d.lambdas) + '); '
                             'new levels of an --init-from model start from its gains, see docs/training.md')
    parser.add_argument('--train-qualities', default='', metavar='Q0,Q1,...',
                        help='sample only these quality levels (default: all)')
    parser.add_argument('--resume', action='store_true', help='continue from <out>.ckpt.* if present')
    parser.add_argument('--export-checkpoint', action='store_true',
                        help='only export <out>.ckpt.* (as it stands) as the model file: no data is read')
    parser.add_argument('--no-progress', action='store_true')


def main(args) -> int:
    import itertools

    from xmodal_compress_ros.codec.models import get_model_class
    from xmodal_compress_ros.errors import DatasetError
    from xmodal_compress_ros.train.crops import FrameBank
    from xmodal_compress_ros.train.loop import TrainConfig, export_checkpoint, train
    from xmodal_compress_ros.train.sources import frames_from_spec

    if args.steps < 1 or args.batch_size < 1 or args.crop < 64 or args.crop % 64:
        raise DatasetError(f'--steps {args.steps} and --batch-size {args.batch_size} must be >= 1 and --crop '
                           f'{args.crop} a multiple of 64')
    post_filter = post_filter_sizes(args.post_filter)
    config = TrainConfig(
        arch=args.arch, out=args.out, steps=args.steps, batch_size=args.batch_size, crop=args.crop,
        lr=args.lr, N=args.N, M=args.M, fusion=args.fusion, conditioning=args.conditioning,
        hyper_refiner=not args.no_hyper_refiner, lidar_dropout=args.lidar_dropout, alpha=args.alpha,
        prediction_loss=args.prediction_loss,
        checkpoint_every=args.checkpoint_every, seed=args.seed, threads=args.threads,
        init_from=args.init_from, resume=args.resume, data=tuple(args.data), device=args.device,
        amp=args.amp, post_filter=post_filter, train_only=args.train_only,
        lambdas=_lambdas(args.lambdas, args.init_from), train_qualities=_int_list(args.train_qualities,
                                                                                  '--train-qualities'))
    if args.export_checkpoint:
        export_checkpoint(config)
        print(f'xmodal train: exported the checkpoint of {config.out} to {config.out}.safetensors')
        return 0
    if get_model_class(config.arch).condition_name == 'reference':
        bank = _pair_bank(args)
    else:
        frames = []
        for spec in args.data:
            source = frames_from_spec(spec)
            frames.extend(itertools.islice(source, args.max_frames) if args.max_frames else source)
        bank = FrameBank.from_frames(frames)
    print(f'xmodal train: {len(bank)} frames from {len(args.data)} source(s), {config.arch} -> {config.out}',
          flush=True)
    train(config, bank, progress=not args.no_progress)
    print(f'xmodal train: wrote {config.out}.safetensors and {config.out}.json')
    return 0


def _pair_bank(args):
    """The P-frame codec's training pairs; their references are decoded by the --init-from intra model."""
    from xmodal_compress_ros.codec.model_io import load_model
    from xmodal_compress_ros.errors import DatasetError
    from xmodal_compress_ros.train.reference_pairs import pair_bank

    if not args.init_from:
        raise DatasetError(f'--arch {args.arch} needs --init-from an intra model (it decodes the references)')
    return pair_bank(args.data, load_model(args.init_from), args.seed, args.max_frames)


def post_filter_sizes(text: str):
    """``--post-filter CHANNELS,BLOCKS`` as a pair of ints >= 0."""
    from xmodal_compress_ros.errors import DatasetError

    try:
        channels, blocks = (int(v) for v in text.split(','))
    except ValueError:
        raise DatasetError(f'--post-filter {text!r}: give CHANNELS,BLOCKS, e.g. 32,4 (0,0 for none)') \
            from None
    if channels < 0 or blocks < 0:
        raise DatasetError(f'--post-filter {text!r}: channels and blocks must be >= 0')
    return channels, blocks


def _lambdas(text, init_from):
    """``--lambdas``: the given list; else the --init-from model's; else the defaults."""
    from xmodal_compress_ros.codec.model_io import read_metadata
    from xmodal_compress_ros.codec.models import DEFAULT_LAMBDAS, check_lambdas
    from xmodal_compress_ros.errors import DatasetError

    if text is None:
        return tuple(read_metadata(init_from)['config']['lambdas']) if init_from else DEFAULT_LAMBDAS
    try:
        return check_lambdas(text.split(','))
    except ValueError as exc:
        raise DatasetError(f'--lambdas {text!r}: {exc}') from None


def _int_list(text: str, option: str):
    from xmodal_compress_ros.errors import DatasetError

    try:
        return tuple(int(v) for v in text.split(',')) if text else ()
    except ValueError:
        raise DatasetError(f'{option} {text!r}: give comma-separated integers, e.g. 0,1') from None
