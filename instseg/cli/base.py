"""What every `instseg` command shares: the group and its one-line errors, parameter types, progress and the
end-of-run summary."""
from __future__ import annotations

import errno
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable

import click

from .. import config as C
from ..errors import Crash, UserError

log = logging.getLogger("instseg")


def _close_bars() -> None:
    """Close open progress bars so an error starts on a line of its own."""
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", [])):
            bar.close()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _terminate_as_interrupt() -> None:
    """SIGTERM (a scheduler's stop, `kill`) unwinds like Ctrl-C, so writers finish or clean up."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _verbose_first(args: list[str]) -> list[str]:
    """-v/-vv/--verbose anywhere before a `--` moves in front of the subcommand, where the group reads it."""
    end = args.index("--") if "--" in args else len(args)
    verbose = [a for a in args[:end] if a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"})]
    return verbose + [a for a in args[:end] if a not in verbose] + args[end:]


class _Group(click.Group):
    """Reports bad input and environment as one line with exit code 2, never a traceback."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        args = _verbose_first(list(sys.argv[1:] if args is None else args))
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        _terminate_as_interrupt()
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as e:  # usage errors: one line, not click's usage block
            _close_bars()
            click.echo(f"Error: {' '.join(e.format_message().split())}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as e:
            self._fail(ctx, str(e))
        except Crash as e:
            _close_bars()
            click.echo(f"Error: {' '.join(str(e).split())}", err=True)
            ctx.exit(1)
        except OSError as e:  # full disk, unwritable --out, a folder under a file ...
            if e.errno in (errno.EPIPE,):
                ctx.exit(1)
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            self._fail(ctx, f"{e.strerror or e}{where}")
        except MemoryError:
            advice = {"run": "; use fewer --variants, a smaller --batch or a lower --work-res"}
            self._fail(ctx, "out of memory" + advice.get(ctx.invoked_subcommand or "", ""))
        except KeyboardInterrupt:
            _close_bars()
            click.echo("Interrupted; run the same command again to resume.", err=True)
            ctx.exit(130)

    @staticmethod
    def _fail(ctx: click.Context, message: str) -> None:
        _close_bars()
        click.echo(f"Error: {' '.join(message.split())}", err=True)
        ctx.exit(2)


class FiniteFloat(click.ParamType):
    """A float that must be finite (nan and inf are refused), optionally within [lo, hi]."""

    name = "float"

    def __init__(self, lo: float | None = None, hi: float | None = None):
        self.lo, self.hi = lo, hi

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            self.fail(f"{v} is not in {self.lo}..{self.hi}", param, ctx)
        return v


class OutPath(click.Path):
    """click.Path that refuses an empty string, and for a file output anything that exists and is not a
    regular file (a device, FIFO or socket would be replaced by the atomic rename), before any work."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not str(value).strip():
            self.fail("must not be empty", param, ctx)
        if not self.dir_okay:
            from ..io import check_replaceable

            try:
                check_replaceable(Path(value))
            except UserError as e:
                self.fail(str(e), param, ctx)
        return super().convert(value, param, ctx)


class SeedList(click.ParamType):
    """Seeds such as 0-99,120, parsed once here (count and range checked before expanding)."""

    name = "seeds"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return C.parse_seeds(value)
        except UserError as e:
            self.fail(str(e), param, ctx)


def _bounded(field: str) -> click.ParamType:
    lo, hi = C.BOUNDS[field]
    if isinstance(C.field_default(field), float):
        return FiniteFloat(lo, hi)
    return click.IntRange(int(lo), int(hi))


def _run_option(name: str, help: str, preset: bool = False, **kw: Any) -> Callable:
    """A `run` option whose default, choices and bounds come from config.RunConfig."""
    field = name.lstrip("-").replace("-", "_")
    d = C.field_default(field)
    shown = (",".join(map(str, d)) if isinstance(d, tuple) else d) or "none"
    if "type" not in kw and field in C.BOUNDS:
        kw["type"] = _bounded(field)
    return click.option(name, default=None, help=f"{help}  [default: {shown}{', or the preset' if preset else ''}]",
                        **kw)


def knob(name: str, help: str, **kw: Any) -> Callable:
    """A tuning knob kept for one release as a hidden alias of `--set FIELD=VALUE`: it still works, and says which
    key replaces it (`instseg run --help` lists what a user sets every day)."""
    field = name.lstrip("-").replace("-", "_")

    def warn(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value is not False:
            click.echo(f"Warning: {name} is now --set {field}=VALUE (or a --config file); the flag goes in the next "
                       "release", err=True)
        return value

    return _run_option(name, help, hidden=True, callback=warn, **kw)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="instseg", prog_name="instseg", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Instance-segmentation datasets from pretrained GANs, without training or labels."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def progress(total: int | None, desc: str, status: str = "", unit: str = "img") -> Any:
    """A bar with its total from the first second (Ultralytics-style), its status (model loading) as postfix.
    smoothing 0: the rate is images made over time, not a burst as a chunk is written."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, desc=desc, smoothing=0, dynamic_ncols=True)
    if status:
        bar.set_postfix_str(status)
    return bar


def summary(path: Path, seconds: float) -> str:
    """The end of a run: images, instances per class, images with none, time, where it is, what to run next."""
    import json

    data = json.loads(Path(path).read_text())
    names = {c["id"]: c["name"] for c in data.get("categories", [])}
    per_class = {n: 0 for n in names.values()}
    for a in data.get("annotations", []):
        per_class[names.get(a["category_id"], "?")] = per_class.get(names.get(a["category_id"], "?"), 0) + 1
    with_one = {a["image_id"] for a in data.get("annotations", [])}
    empty = sum(im["id"] not in with_one for im in data.get("images", []))
    folder = Path(path).parent
    classes = ", ".join(f"{n} {v}" for n, v in per_class.items())
    return "\n".join([
        f"done in {seconds:.1f} s: {len(data.get('images', []))} images, {len(data.get('annotations', []))} "
        f"instances ({classes or 'no classes'}), {empty} image(s) with none",
        f"dataset: {path} (images in {folder / 'images'}, card in {folder / 'README.md'})",
        f"next: instseg report {folder} --out {folder / 'report.html'}   |   "
        f"instseg export {folder} --format yolo"])


def _tqdm_download() -> Any:
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int | None) -> None:
        if "bar" not in bar or (done < bar["bar"].n):  # a new URL starts from zero
            if "bar" in bar:
                bar["bar"].close()
            bar["bar"] = tqdm(total=total, unit="B", unit_scale=True, desc="download", leave=False)
        bar["bar"].update(done - bar["bar"].n)
        if total is not None and done >= total:
            bar["bar"].close()

    return update


def export_yolo_layout(run_dir: Path, out: Path) -> Path:
    """The YOLO-seg layout of a dataset folder (`--format yolo` of run and toy render)."""
    from ..rundir import RunDir
    from ..yolo_export import export_yolo

    data = RunDir(run_dir).read_dataset()
    return export_yolo(data, run_dir, out)
