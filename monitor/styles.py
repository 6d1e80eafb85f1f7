"""The dashboard's layout and colours (kept in Python so a wheel needs no data files)."""

APP_CSS = """
/* llm-monitor: header, GPU + system panels, switch panel, log, footer. */

#panels {
    height: auto;
}

#gpu {
    width: 2fr;
    height: auto;
    border: round $primary 60%;
    border-title-color: $text;
    padding: 0 1;
}

#system {
    width: 1fr;
    height: 100%;
    border: round $primary 60%;
    border-title-color: $text;
    padding: 0 1;
}

#switch {
    border: round $warning;
    display: none;
}

#switch.failed {
    border: round $error;
}

#log-box {
    height: 1fr;
}

#log {
    height: 1fr;
    border: round $primary 60%;
    border-title-color: $text;
    border-subtitle-color: $text-muted;
}

#log:focus {
    border: round $primary;
}

#filter {
    display: none;
    margin: 0 1;
}
"""
