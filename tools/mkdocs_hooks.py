"""MkDocs hooks for the documentation site (mkdocs.yml: ``hooks``).

fedlearn's docstrings cross-reference in Sphinx style (``:func:`fedavg```), which reads well in
``help()`` and in an editor; mkdocstrings renders the role's name as text before the code, so
the API pages would show ``:func:fedavg``. The reader wants the name only.
"""
from __future__ import annotations

import re

# the role, then the code element markdown made of its backticked target; `~a.b.c` shows `c`
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const|ref):"
                   r"<code>(~?)([^<]+)</code>")


def strip_roles(html: str) -> str:
    """Drop Sphinx role prefixes from rendered HTML, keeping the code they mark."""
    def keep(match: re.Match) -> str:
        target = match.group(2)
        if match.group(1):
            target = target.rsplit(".", 1)[-1]
        return f"<code>{target}</code>"
    return _ROLE.sub(keep, html)


def on_page_content(html: str, **kwargs) -> str:
    return strip_roles(html)
