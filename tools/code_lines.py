"""Count the lines of a Python tree that are code: not blank, comments or docstrings.

    python tools/code_lines.py katcp
"""

import ast
import io
import os
import sys
import tokenize


def code_lines(source):
    """Return the set of line numbers of `source` holding code."""
    docstring_lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(
                    getattr(body[0], "value", None), ast.Constant) and isinstance(
                    body[0].value.value, str):
                docstring_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                          tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    return lines - docstring_lines


def main(root):
    total = 0
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    total += len(code_lines(f.read()))
    print(total)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "katcp")
