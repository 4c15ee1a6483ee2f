"""Execute a notebook headless with injected parameters (papermill-style, no papermill).

The notebook's knobs live in one cell tagged ``parameters``. Injected values go
in a new cell right after it, and every injected name must already be assigned
in that cell: a typo fails loudly instead of being silently ignored.

    python tools/notebook_runner.py Federated_Learning.ipynb --inplace
    python tools/notebook_runner.py Federated_Learning.ipynb -p ROUNDS=1 -o /tmp/out.ipynb
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path


def parameter_names(source: str) -> set[str]:
    return {t.id for node in ast.parse(source).body if isinstance(node, (ast.Assign, ast.AnnAssign))
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)}


def inject_parameters(nb, parameters: dict) -> None:
    import nbformat

    tagged = [i for i, c in enumerate(nb.cells)
              if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError("notebook must have exactly one cell tagged 'parameters', "
                         f"found {len(tagged)}")
    known = parameter_names(nb.cells[tagged[0]].source)
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise ValueError(f"injected parameters not in the parameters cell: {', '.join(unknown)} "
                         f"(it defines: {', '.join(sorted(known))})")
    nb.cells = [c for c in nb.cells
                if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    if parameters:
        source = "# Injected parameters\n" + "".join(f"{k} = {v!r}\n"
                                                     for k, v in parameters.items())
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
        nb.cells.insert(tagged[0] + 1, cell)


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def tidy_outputs(nb) -> None:
    """Outputs for people: consecutive prints to one stream as one block, no ANSI colour
    codes, no per-cell timing metadata."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        merged: list = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                out["text"] = ANSI.sub("", out["text"])
                if merged and merged[-1].get("output_type") == "stream" \
                        and merged[-1]["name"] == out["name"]:
                    merged[-1]["text"] += out["text"]
                    continue
            merged.append(out)
        cell.outputs = merged


def installed_kernelspec(name: str = "python3") -> dict:
    """The kernelspec metadata of the installed kernel, as JupyterLab writes it."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(name)
    return {"display_name": spec.display_name, "language": spec.language, "name": name}


def execute_notebook(path: str | Path, parameters: dict | None = None, *,
                     output: str | Path | None = None, timeout: int = 1800,
                     cwd: str | Path | None = None):
    """Run every cell of ``path`` with ``parameters`` injected; save to ``output``; return the
    notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    inject_parameters(nb, parameters or {})
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd or Path(path).parent)}})
    try:
        client.execute()
    finally:
        tidy_outputs(nb)
        nb.metadata["kernelspec"] = installed_kernelspec()  # so it opens unmodified
        if output is not None:
            nbformat.write(nb, str(output))
    return nb


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Execute a notebook with injected parameters.")
    p.add_argument("notebook")
    p.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("-o", "--output", help="where to save the executed notebook")
    p.add_argument("--inplace", action="store_true", help="overwrite the notebook with outputs")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = p.parse_args(argv)
    params = {}
    for item in args.parameter:
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", name):
            p.error(f"argument -p: expected NAME=VALUE, got {item!r}")
        params[name] = _value(value)
    output = args.notebook if args.inplace else args.output
    execute_notebook(args.notebook, params, output=output, timeout=args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
