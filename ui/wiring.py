"""Events keyed by name: a handler returns its updates keyed by output name ("status", "gallery", ...),
never as a tuple whose order must match a list of components. The layout names the components once,
and `wire` turns the names into Gradio's {component: update} answer; a name a handler leaves out
keeps its value on the page."""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import gradio as gr


def wire(handler: Callable[..., Any], outputs: Mapping[str, Any]) -> Callable[..., Any]:
    """`handler` as a Gradio event function whose outputs are `outputs` (name -> component): its
    named updates become {component: update}, every output it leaves out is skipped (kept as is).
    A name that is not an output is a wiring mistake, and says so."""

    @functools.wraps(handler)
    def event(*args: Any) -> dict[Any, Any]:
        updates = handler(*args)
        unknown = set(updates) - set(outputs)
        if unknown:
            raise KeyError(f"{handler.__name__} updates {sorted(unknown)}, which are not among its outputs")
        return {component: updates.get(name, gr.skip()) for name, component in outputs.items()}

    return event


def on(trigger: Any, handler: Callable[..., Any], inputs: list, outputs: Mapping[str, Any], **options: Any) -> None:
    """Wire `handler` to `trigger` (an event listener, or a list of them for `gr.on`)."""
    fn, wired = wire(handler, outputs), list(outputs.values())
    if isinstance(trigger, list):
        gr.on(trigger, fn, inputs=inputs, outputs=wired, **options)
    else:
        trigger(fn, inputs=inputs, outputs=wired, **options)


def with_how(handler: Callable[..., Any]) -> Callable[..., Any]:
    """`handler` fed by Gradio with the search mode and the relevance cut-off in front of its usual
    inputs: they reach it as the keywords `mode` and `min_relevance`, after any `*rows`, so its
    positional inputs keep their order."""

    @functools.wraps(handler)
    def event(mode: Any, min_relevance: Any, *args: Any) -> Any:
        return handler(*args, mode=mode, min_relevance=min_relevance)

    return event
