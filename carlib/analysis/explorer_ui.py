"""The filter explorer as JupyterLab widgets (``notebooks/explore.ipynb``).

Choose a profile and a layer; the layer's filters are shown in a grid framed by their CAR
(weights for a first layer, strongest patches for deeper ones). Selecting a filter shows its
CAR, color index and label, strongest patches and most and least important classes. Pruning a
set of filters recomputes the network's accuracy and the remaining filters' CAR with the CAR
engine on a subset of the greedy images (:class:`~carlib.analysis.explorer.LayerExplorer`),
and marks the result next to the greedy curve. Every number comes from
:class:`~carlib.analysis.study.Study`'s cached tables or from the engine.

Every widget the page shows carries a CSS class ``carlib-*`` (``carlib-grid``,
``carlib-filter``, ``carlib-car``, ``carlib-prune-select``, ``carlib-prune``,
``carlib-accuracy``, ``carlib-busy``, ...), so a browser can find it.

Example:
    >>> app = ExplorerApp("smoke")   # doctest: +SKIP
    >>> app.widget                   # doctest: +SKIP
"""

from __future__ import annotations

import html
import io
import time
from typing import Callable

import ipywidgets as W

from .explorer import DEFAULT_IMAGES, LayerExplorer, PruneResult, png_bytes
from .profiles import PROFILES
from .study import Study

__all__ = ["ExplorerApp", "figure_png"]


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed).

    Example:
        >>> import matplotlib.pyplot as plt
        >>> figure_png(plt.figure(figsize=(1, 1)))[:4]
        b'\\x89PNG'
    """
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pct(x: float) -> str:
    return f"{100 * x:+.2f} pp"


class ExplorerApp:
    """The explorer's widgets and their callbacks.

    Args:
        profile: the profile shown first (``default``, ``smoke``, ``paper``).
        layer: the layer shown first (default: the profile's first pruned layer).
        n_images: images the live pruning runs on (see :class:`LayerExplorer`).
        study_factory: how a profile's :class:`Study` is made (default ``Study(name)``).

    Attributes:
        widget: the top-level widget (display it in a notebook).
        history: every :class:`PruneResult` of the current layer, in order.

    Example:
        >>> app = ExplorerApp("smoke")  # doctest: +SKIP
        >>> app.select(5); app.prune([3, 7]).accuracy  # doctest: +SKIP
    """

    def __init__(self, profile: str = "default", layer: str | None = None, *,
                 n_images: int | None = DEFAULT_IMAGES,
                 study_factory: Callable[[str], Study] | None = None):
        self.n_images = n_images
        self._make_study = study_factory or (lambda name: Study(name))
        self.history: list[PruneResult] = []
        self.result: PruneResult | None = None
        self.selected = 0
        lay = W.Layout
        self.profile_w = W.Dropdown(options=list(PROFILES), value=profile, description="profile")
        self.layer_w = W.Dropdown(options=[], description="layer")
        self.busy = W.HTML("", layout=lay(min_width="14em")).add_class("carlib-status")
        self.grid_w = W.Image(format="png").add_class("carlib-grid")
        self.legend = W.HTML().add_class("carlib-legend")
        self.filter_w = W.Dropdown(options=[], description="filter",
                                   layout=lay(width="17em")).add_class("carlib-filter")
        self.info_w = W.HTML().add_class("carlib-info")
        self.patches_w = W.Image(format="png").add_class("carlib-patches")
        self.classes_w = W.Image(format="png", layout=lay(max_width="100%")).add_class("carlib-classes")
        self.prune_w = W.SelectMultiple(options=[], rows=8, description="prune").add_class("carlib-prune-select")
        self.prune_btn = W.Button(description="Prune these filters", button_style="danger",
                                  icon="scissors", layout=lay(width="auto")).add_class("carlib-prune")
        self.reset_btn = W.Button(description="Restore all", icon="undo",
                                  layout=lay(width="auto")).add_class("carlib-reset")
        self.result_w = W.HTML().add_class("carlib-result")
        self.progress_w = W.Output().add_class("carlib-progress")
        self.curve_w = W.Image(format="png").add_class("carlib-curve")
        self.widget = W.VBox([
            W.HBox([W.HTML("<b>carlib explorer</b>"), self.profile_w, self.layer_w, self.busy]),
            W.HBox([W.VBox([self.grid_w, self.legend, self.curve_w], layout=lay(max_width="720px")),
                    W.VBox([self.filter_w, self.info_w, self.patches_w, self.prune_w,
                            W.HBox([self.prune_btn, self.reset_btn]), self.result_w, self.progress_w],
                           layout=lay(min_width="22em", max_width="30em"))]),
            self.classes_w,
        ]).add_class("carlib-explorer")
        self._controls = [self.profile_w, self.layer_w, self.filter_w, self.prune_w, self.prune_btn,
                          self.reset_btn]
        self._quiet = False
        self.profile_w.observe(lambda ch: self._on(f"loading profile {ch['new']}", self._load_profile,
                                                   ch["new"]), names="value")
        self.layer_w.observe(lambda ch: self._on(f"loading {ch['new']}", self._load_layer, ch["new"]),
                             names="value")
        self.filter_w.observe(lambda ch: self._on(f"filter {ch['new']}", self.select, ch["new"]),
                              names="value")
        self.prune_btn.on_click(lambda _: self._busy("pruning and recomputing CAR", self.prune,
                                                     list(self.prune_w.value)))
        self.reset_btn.on_click(lambda _: self._busy("restoring", self.prune, []))
        self._busy(f"loading profile {profile}", self._load_profile, profile, layer)

    # ---------------------------------------------------------------- busy state
    def _on(self, what: str, fn: Callable, value) -> None:
        """A widget changed: run ``fn(value)`` busy, unless the change is the app's own."""
        if not self._quiet and value is not None:
            self._busy(what, fn, value)

    def _busy(self, what: str, fn: Callable, *args):
        """Run ``fn`` with the controls disabled and a busy note shown; errors are shown too."""
        self.busy.value = f"<span class='carlib-busy' style='color:#b35900'>&#9203; {html.escape(what)} ...</span>"
        for c in self._controls:
            c.disabled = True
        t0 = time.perf_counter()
        try:
            out = fn(*args)
        except Exception as exc:  # shown on the page, not swallowed: also re-raised
            self._enable()
            self.busy.value = f"<span class='carlib-error' style='color:crimson'>{html.escape(str(exc))}</span>"
            raise
        self._enable()  # the controls first, so that "ready" means ready
        self.busy.value = (f"<span class='carlib-idle' style='color:grey'>ready "
                           f"({time.perf_counter() - t0:.1f} s)</span>")
        return out

    def _enable(self) -> None:
        for c in self._controls:
            c.disabled = False

    # ---------------------------------------------------------------- loading
    def _load_profile(self, name: str, layer: str | None = None) -> None:
        with self.progress_w:  # tqdm bars of anything computed show here
            self.study = self._make_study(name)
        self.progress_w.clear_output()
        layers = list(self.study.profile.greedy_steps)
        first = layer if layer in layers else layers[0]
        self._quiet = True
        try:
            self.layer_w.options = layers
            self.layer_w.value = first
        finally:
            self._quiet = False
        self._load_layer(first)

    def _load_layer(self, layer: str) -> None:
        with self.progress_w:
            self.ex = LayerExplorer(self.study, layer, n_images=self.n_images)
        self.progress_w.clear_output()
        self.history, self.result = [], None
        car = self.ex.car.sort_values("filter")
        labels = [(f"{f}  (CAR {_pct(c)})", int(f)) for f, c in zip(car["filter"], car["car"])]
        most = int(car.sort_values(["car", "filter"], ascending=[False, True])["filter"].iloc[0])
        self._quiet = True
        try:
            self.prune_w.value = ()
            self.prune_w.options = labels
            self.filter_w.options = labels
            self.filter_w.value = most
        finally:
            self._quiet = False
        correct, n = self.ex.unpruned()
        self.result_w.value = (f"Live pruning runs the CAR engine on <b>{n}</b> of the "
                               f"{len(self.study.greedy_data):,} greedy images (unpruned: "
                               f"{correct}/{n} = {correct / n:.2%}).")
        self.select(most)
        self._draw_curve()

    # ---------------------------------------------------------------- actions
    def select(self, filt: int) -> dict:
        """Show one filter: CAR, color index and label, patches, important classes."""
        from . import figures
        from .plotting import filter_images

        self.selected = int(filt)
        info = self._show_info()
        self.patches_w.value = self.ex.mosaic(self.selected, n=9, scale=3 if self.ex.first else 2)
        table = self.ex.classes(self.selected)
        shown = ({"picture": filter_images(self.ex.conv)[self.selected]} if self.ex.first else
                 {"patches": self.ex.patches(self.selected, 4)})
        fig = figures.class_importance(table, self.study.data, self.study.data.labels,
                                       layer=self.ex.layer, filt=self.selected,
                                       why=f"CAR {_pct(info['car'])}", images_per_class=2, **shown)
        self.classes_w.value = figure_png(fig)
        self._draw_grid()
        return info

    def _show_info(self) -> dict:
        """The selected filter's numbers (the cached tables' and, after pruning, the live CAR)."""
        info = self.ex.info(self.selected)
        live = ""
        if self.result is not None and self.selected in self.result.pruned:
            live = "<br><i>pruned</i>"
        elif self.result is not None:
            c = float(self.ex.car_with(self.result)[self.selected])
            live = (f"<br>CAR with {len(self.result.pruned)} filters pruned: "
                    f"<span class='carlib-car-live'>{_pct(c)}</span> ({self.result.n_images} images)"
                    if c == c else "<br>CAR with the filters pruned: <i>computing</i>")
        step = "" if info["greedy_step"] is None else f"; greedy step {info['greedy_step']}"
        self.info_w.value = (
            f"<b>{self.ex.layer} filter {self.selected}</b><br>"
            f"CAR <span class='carlib-car'>{_pct(info['car'])}</span> "
            f"(accuracy {info['base_accuracy']:.2%} &rarr; {info['accuracy']:.2%} on "
            f"{info['n_images']:,} images{step})<br>"
            f"color index <span class='carlib-color-index'>{info['color_index']:.2f}</span> "
            f"({info['index_source']}): <b class='carlib-label'>{info['label']}-selective</b>{live}")
        return info

    def prune(self, filters: list[int]) -> PruneResult | None:
        """Prune ``filters`` (none: restore the network) and show accuracy and CAR afterwards."""
        from tqdm.auto import tqdm

        if not filters:
            self.result = None
            self.result_w.value = "All filters restored."
            self.prune_w.value = ()
            self._draw_grid()
            self.select(self.selected)
            return None
        self.progress_w.clear_output()
        rest = self.ex.n_filters - len(set(filters))
        b_correct, b_n = self.ex.unpruned()

        def show(res: PruneResult) -> None:
            self.result = res
            done = len(res.car)
            best = ""
            if done:
                top = res.car.sort_values(["car", "filter"], ascending=[False, True]).iloc[0]
                best = f"; most important remaining filter {int(top['filter'])} (CAR {_pct(float(top['car']))})"
            self.result_w.value = (
                f"<span class='carlib-accuracy' data-correct='{res.correct}' data-n='{res.n_images}'>"
                f"{len(res.pruned)} filters pruned ({', '.join(map(str, res.pruned))}): accuracy "
                f"{res.correct}/{res.n_images} = {res.accuracy:.2%}</span> "
                f"(unpruned {b_correct}/{b_n} = {b_correct / b_n:.2%}) on {res.n_images} images. "
                f"<span class='carlib-car-progress' data-done='{done}' data-total='{rest}'>CAR of "
                f"{done} of {rest} remaining filters recomputed</span>{best} ({res.seconds:.1f} s)")
            self._draw_grid()
            self._show_info()

        with self.progress_w:
            with tqdm(total=rest * len(self.ex.images), desc="CAR", unit="img", mininterval=0.5) as bar:
                res = self.ex.prune(filters, progress=bar, first=[self.selected], on_chunk=show)
        self.progress_w.clear_output()
        self.history.append(res)
        show(res)
        self.select(self.selected)
        self._draw_curve()
        return res

    # ---------------------------------------------------------------- drawing
    def _draw_grid(self) -> None:
        car = self.ex.car_with(self.result)
        pruned = self.result.pruned if self.result else []
        self.grid_w.value = png_bytes(self.ex.grid(car, selected=self.selected, pruned=pruned))
        source = (f"CAR with {len(pruned)} filters pruned, on {self.result.n_images} images"
                  if self.result else f"CAR on {int(self.ex.car.attrs['n_images']):,} images (cached table)")
        self.legend.value = (
            "<div style='font-size:85%'>frame: "
            "<span style='background:linear-gradient(90deg,#053061,#f7f7f7,#67001f);"
            "padding:0 3em'></span> CAR from negative (blue) to positive (red), "
            f"grey: pruned (dimmed) or not recomputed yet, black: selected. {source}.</div>")

    def _draw_curve(self) -> None:
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        g = self.ex.greedy
        base = float(g.attrs.get("base_accuracy", float("nan")))
        fig, ax = plt.subplots(figsize=(4.6, 2.8))
        ax.plot([0] + list(g["step"]), [100 * base] + list(100 * g["accuracy"]), "o-", ms=3,
                color="crimson", label=f"greedy CAR ({len(self.study.greedy_data):,} images)")
        if self.history:
            ax.plot([len(r.pruned) for r in self.history], [100 * r.accuracy for r in self.history],
                    "s", color="navy", label=f"your pruning ({len(self.ex.images)} images)")
        ax.set(xlabel=f"filters of {self.ex.layer} pruned", ylabel="top-1 accuracy (%)",
               title=f"greedy pruning so far: {len(g)} steps")
        ax.legend(fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        self.curve_w.value = figure_png(fig)
