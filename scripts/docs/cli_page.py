"""The command-line reference page, written by walking the argparse parser of `dualnet.cli`
(its subcommands, argument groups and actions), not by reading --help text."""

from __future__ import annotations

import argparse
import html

from dualnet.cli import _parser


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every subcommand, in the order they were added."""
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    return [(name, helps.get(name) or "", sub) for name, sub in action.choices.items()]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """One table per argument group that has arguments (positionals, options, named groups)."""
    formatter = parser._get_formatter()
    lines = []
    for group in parser._action_groups:
        actions = [
            a
            for a in group._group_actions
            if a.help is not argparse.SUPPRESS
            and not isinstance(a, argparse._SubParsersAction | argparse._HelpAction)
        ]
        if not actions:
            continue
        lines += [f"**{group.title}**", ""]
        if group.description:
            lines += [group.description[0].upper() + group.description[1:] + ".", ""]
        lines += ["| argument | meaning |", "|---|---|"]
        for a in actions:
            invocation = formatter._format_action_invocation(a)
            text = formatter._expand_help(a) if a.help else ""
            if a.choices and not isinstance(a.choices, dict):
                text += f" (one of: {', '.join(map(str, a.choices))})"
            if a.required and a.option_strings:
                text += " (required)"
            code = html.escape(invocation).replace("|", "&#124;")  # `\|` stays in a code span
            lines.append(f"| <code>{code}</code> | {_cell(text)} |")
        lines.append("")
    return lines


def cli_page() -> str:
    parser = _parser()
    lines = [
        "# Command line",
        "",
        "This page is generated from the argparse parser of `dualnet/cli.py` when the site is "
        "built. Exit status: `0` ok, `1` errors in the input (a diagnostic: "
        "[Diagnostics](diagnostics.md)), `2` usage errors, `3` an internal error.",
        "",
        "```text",
        parser.format_usage().strip(),
        "```",
        "",
        _cell(parser.description or ""),
        "",
    ]
    lines += _options(parser)
    subcommands = _subcommands(parser)
    lines += ["| command | what it does |", "|---|---|"]
    lines += [f"| [`{name}`](#{name}) | {_cell(text)} |" for name, text, _ in subcommands]
    lines.append("")
    for name, text, sub in subcommands:
        lines += [f"## {name}", ""]
        if text:
            lines += [text[0].upper() + text[1:] + ".", ""]
        lines += ["```text", sub.format_usage().strip(), "```", ""]
        lines += _options(sub)
    return "\n".join(lines)
