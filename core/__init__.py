"""memberkit's kernel: hook specs, the plugin registry, settings, the database, event intake, the wallet.

Plugins import none of it directly: ``memberkit.plugin`` is their one module.
"""
