"""The overlays: model picker, bench comparison, confirmation, help."""

from monitor.screens.compare import CompareScreen
from monitor.screens.confirm import ConfirmScreen
from monitor.screens.help import HelpScreen
from monitor.screens.picker import Pick, PickerScreen

__all__ = ["CompareScreen", "ConfirmScreen", "HelpScreen", "Pick", "PickerScreen"]
