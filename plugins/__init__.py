"""Built-in plugins, one package each; core/plugins.py lists them by name."""
