"""memberkit: a plugin-based, headless membership programme beside any commerce platform.

The package's layers, lowest first: ``memberkit.core`` (the kernel), ``memberkit.schema`` (the composed
GraphQL schema), ``memberkit.plugin`` (everything a plugin may use), ``memberkit.plugins`` (the built-in
plugins), and on top the HTTP server, the CLI and the migration and job runners.
"""
