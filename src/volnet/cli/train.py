"""``volnet train``: the flags mapped onto :mod:`volnet.train.setup` and :mod:`volnet.interop.engine_setup`,
progress printed while the run trains, and what it saved."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .args import UsageError

# Options a resumed run may change; every other one is the saved run's.
RESUME_OVERRIDES = ("--epochs", "--root", "--resume", "--report", "--engine", "--device", "--nproc", "--sync-bn",
                    "--stream")  # --keep-best and --early-stop are the saved run's, continued


def cmd_train(args) -> int:
    from ..interop.engine_setup import launches_workers
    from ..train import RunFolder, TrainingInterrupted
    from ..train.setup import SetupError

    launching = args.engine == "torch" and launches_workers(args.nproc)
    try:
        device = _choose_device(args, launching)
        if launching:  # --nproc N: the workers run the training; this is their exit code
            return _launch(args, device)
        engine = _open_engine(device, args.sync_bn)
    except SetupError as error:
        raise UsageError(str(error)) from None
    try:
        trainer = _trainer(args, engine)
        if trainer is None:
            return 0
        if engine is not None and engine.rank != 0:
            trainer.callbacks = []  # progress and reports come from rank 0 alone
        trainer.run()
    except SetupError as error:
        raise UsageError(str(error)) from None
    except TrainingInterrupted as stop:
        if engine is not None and engine.rank != 0:  # rank 0 says it for all workers
            return 128 + stop.signal
        print(f"\ninterrupted by {stop}", file=sys.stderr)
        if stop.checkpoint is not None:
            print(f"resume with: volnet train --resume {stop.checkpoint}", file=sys.stderr)
        return 128 + stop.signal
    finally:
        if engine is not None:
            engine.close()
    last = trainer.history[-1]
    history = " and ".join(path.name for path in RunFolder(trainer.out_dir).history_files)
    print(f"saved {trainer.checkpoint_path} (history: {history} beside it)")
    if last.val_accuracy is not None:
        print(f"validation accuracy: {last.val_accuracy:.2%}")
    _say_best(trainer.watch, trainer.best_path)
    return 0


def _choose_device(args, launching: bool) -> str | None:
    """None for the NumPy engine, else the PyTorch device; the flags that cannot apply are refused first."""
    from ..interop.engine_setup import choose_device, worker_step_memory

    if args.engine == "numpy":
        torch_only = sorted({"--device", "--nproc", "--sync-bn"} & set(args.given))
        if torch_only:
            raise UsageError(f"{', '.join(torch_only)} apply to --engine torch only")
    step_memory = worker_step_memory(args.arch, args.batch_size, args.nproc, args.optimizer) \
        if launching and not args.resume else 0
    return choose_device(args.engine, args.device, nproc=args.nproc, sync_bn=args.sync_bn, step_memory=step_memory)


def _launch(args, device: str) -> int:
    """Start ``--nproc`` workers with this command's words; their exit code. A new run is refused here once,
    not by every worker, when --out already holds one."""
    from ..interop.engine_setup import launch_workers
    from ..train.setup import default_out, new_run_folder

    if not args.resume:
        new_run_folder(args.out or default_out(args.arch, args.data), args.overwrite)
    backend = "nccl" if device == "cuda" else "gloo"
    print(f"engine: torch on {device}, {args.nproc} DistributedDataParallel workers ({backend})", flush=True)
    workers = launch_workers(["train", *args.words], args.nproc)
    sys.stderr.write(workers.output)  # the workers' own messages, once
    if workers.error:
        print(f"volnet train: error: {workers.error}", file=sys.stderr)
    return workers.code


def _open_engine(device: str | None, sync_bn: bool):
    """The PyTorch engine on ``device`` (None: NumPy); a worker other than rank 0 prints nothing."""
    if device is None:
        return None
    from ..interop.engine_setup import open_engine
    from ..interop.torch_engine import is_worker

    engine = open_engine(device, sync_bn)
    if engine.rank != 0:  # one worker speaks for all; errors still reach stderr
        sys.stdout = open(os.devnull, "w")
    elif not is_worker():
        print(f"engine: torch on {device}")
    return engine


def _trainer(args, engine):
    """The new or resumed trainer the flags ask for (None: a resumed run with nothing left to train)."""
    from ..train.setup import default_out, new_trainer, resumed_trainer

    if args.resume:
        refused = sorted(set(args.given) - set(RESUME_OVERRIDES))
        if refused:
            raise UsageError(f"{', '.join(refused)} cannot change a resumed run: --resume continues with the saved "
                             "run's settings; only --epochs (to extend it), --root (to find its data elsewhere) and "
                             f"{', '.join(f for f in RESUME_OVERRIDES if f not in ('--epochs', '--root', '--resume'))}"
                             " apply")
        callbacks = [_progress_callback(sys.stdout), *_report_callbacks(args, Path(args.resume).parent)]
        return resumed_trainer(args.resume, epochs=args.epochs, root=args.root, stream=args.stream, engine=engine,
                               callbacks=callbacks, say=print)
    out = args.out or default_out(args.arch, args.data)
    return new_trainer(
        args.arch, args.data, out=out, overwrite=args.overwrite, root=args.root, size=args.size,
        grayscale=args.grayscale, stream=args.stream, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        schedule=args.schedule, step_every=args.step_every, gamma=args.gamma, warmup=args.warmup,
        augment=args.augment, crop_pad=args.crop_pad, rotate_degrees=args.rotate_degrees,
        shift_pixels=args.shift_pixels, jitter_strength=args.jitter_strength, cutout_size=args.cutout_size,
        normalize=not args.no_normalize, val_split=args.val_split, loss=args.loss, seed=args.seed,
        class_weight=args.class_weight, init_from=args.init_from, freeze=args.freeze, keep_best=args.keep_best,
        early_stop=args.early_stop, engine=engine,
        callbacks=[_progress_callback(sys.stdout), *_report_callbacks(args, out)], say=print)


def _say_best(watch, best_path) -> None:
    """Which epoch was best, where it is kept, and whether the run stopped early (--keep-best, --early-stop)."""
    from ..train.setup import counted

    if watch is None or watch.epoch is None:
        return
    if watch.stopped:
        print(f"stopped early: {watch.monitor} has not improved for {counted(watch.patience, 'epoch')}; the best "
              f"was {watch.describe()}")
    if watch.keep:
        print(f"best: {watch.describe()} in {best_path}")


def _progress_callback(stream):
    """A tqdm bar with images/s and ETA on a terminal; one plain line per epoch otherwise."""
    from ..train import Callback

    try:
        from tqdm import tqdm
    except ImportError:  # no bar without tqdm: the per-epoch lines still print
        tqdm = None

    class Progress(Callback):
        def __init__(self):
            self.bar = None

        def on_epoch_start(self, epoch, epochs, batches):
            if tqdm is not None and stream.isatty():
                self.bar = tqdm(total=batches, desc=f"epoch {epoch}/{epochs}", unit="batch", file=stream,
                                leave=False, dynamic_ncols=True)

        def on_batch(self, progress):
            if self.bar is not None:
                self.bar.set_postfix_str(f"loss {progress.loss:.4f} acc {progress.accuracy:.3f} "
                                         f"{progress.images_per_second:,.0f} img/s", refresh=False)
                self.bar.update(1)

        def on_epoch(self, record):
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            val = (f"  val loss {record.val_loss:.4f}  val acc {record.val_accuracy:.3f}"
                   if record.val_loss is not None else "")
            print(f"epoch {record.epoch}  lr {record.lr:.3g}  loss {record.train_loss:.4f}  "
                  f"acc {record.train_accuracy:.3f}{val}  {record.images_per_second:,.0f} img/s  "
                  f"{record.seconds:.1f}s", file=stream, flush=True)

    return Progress()


def _report_callbacks(args, out_dir) -> list:
    """With --report: a callback that rewrites OUT/report.html after every epoch (atomically; the page reloads)."""
    if not getattr(args, "report", False):
        return []
    from ..train import Callback
    from ..train.run_folder import RunFolder
    from ..viz.report import write_report

    folder = RunFolder(out_dir)

    class Report(Callback):
        epochs = None

        def on_epoch_start(self, epoch, epochs, batches):
            self.epochs = epochs

        def on_epoch(self, record):
            reload = 15 if record.epoch != self.epochs else None  # the last epoch's page is final: it stays still
            try:
                path = write_report(folder.checkpoint, folder.path / "report.html", reload_seconds=reload)
            except (ValueError, OSError) as error:  # a report that fails never stops the training
                print(f"report not written: {error}", file=sys.stderr)
            else:
                print(f"wrote {path}", flush=True)

    return [Report()]
