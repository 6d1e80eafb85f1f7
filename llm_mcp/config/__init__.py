"""models.conf, engines and the compose template: what the user wrote, checked."""
