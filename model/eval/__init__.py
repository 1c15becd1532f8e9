"""Measuring answers: the SQuAD metrics, the harness behind `lectern eval answers`, its report.

The harness is handed the corpus to index and a factory of services (the CLI builds
`api.service.Lectern`s), so every question goes through the serving code while this
package imports nothing of `api`. Serving never imports this package.
"""
