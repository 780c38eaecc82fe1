"""``realtalk devices``: list the sound cards PortAudio sees, for --input-device/--output-device.

The command is thin: ``list_devices()`` → ``render_devices()``. The ``render_*`` functions are pure
(plain data in, Rich renderables out) so they can be snapshot-tested.
"""

from __future__ import annotations

from collections.abc import Sequence

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from realtalk.audio.devices import DeviceInfo, list_devices
from realtalk.errors import ConfigError

__all__ = ["devices", "render_device_error", "render_devices", "render_no_devices"]


def devices() -> None:
    """List the sound devices (index, name, channels, default rate) for --input-device/--output-device.

    Choose a device by its index or by part of its name. Exits with status 1 when PortAudio is
    missing or sees no device; `realtalk talk --input-wav in.wav --output-wav out.wav` needs none.
    """
    console = Console(highlight=False, soft_wrap=True)
    try:
        found = list_devices()
    except ConfigError as exc:
        console.print(render_device_error(exc))
        raise typer.Exit(1) from None
    if not found:
        console.print(render_no_devices())
        raise typer.Exit(1)
    console.print(render_devices(found))


def render_devices(found: Sequence[DeviceInfo]) -> Group:
    """A table of devices, defaults marked, and how to choose one."""
    table = Table(title="Sound devices", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("name")
    table.add_column("host API")
    table.add_column("in", justify="right")
    table.add_column("out", justify="right")
    table.add_column("default rate", justify="right")
    table.add_column("default")
    for device in found:
        marks = [
            label
            for label, flag in (("input", device.is_default_input), ("output", device.is_default_output))
            if flag
        ]
        table.add_row(
            str(device.index),
            device.name,
            device.hostapi,
            str(device.max_input_channels or "-"),
            str(device.max_output_channels or "-"),
            f"{device.default_sample_rate_hz} Hz",
            ", ".join(marks),
            style="bold" if marks else None,
        )
    hint = Text(
        "Choose with `realtalk talk --input-device N --output-device N` (an index or part of the name).",
        style="dim",
    )
    return Group(table, hint)


def render_no_devices() -> Text:
    return Text.assemble(
        ("✗ no sound devices: ", "bold red"),
        "PortAudio sees no microphone or speaker on this machine. Connect one (or check that your "
        "user may use audio: the `audio` group on Linux), or run without a sound card: "
        "`realtalk talk --input-wav question.wav --output-wav reply.wav`.",
    )


def render_device_error(error: ConfigError) -> Text:
    return Text.assemble(("✗ sound devices: ", "bold red"), str(error))
