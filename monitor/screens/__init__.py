"""The overlays: model picker, confirmation, help."""

from monitor.screens.confirm import ConfirmScreen
from monitor.screens.help import HelpScreen
from monitor.screens.picker import Pick, PickerScreen

__all__ = ["ConfirmScreen", "HelpScreen", "Pick", "PickerScreen"]
