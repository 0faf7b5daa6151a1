"""The page shell: HTML skeleton, stylesheet and the few lines of script that refresh the panels."""

from __future__ import annotations

import base64
import hashlib
from string import Template

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#F3F5F8;color:#1F2933;font:14px/1.45 system-ui,-apple-system,'Segoe UI','Liberation Sans',
'DejaVu Sans',Arial,sans-serif;font-variant-numeric:tabular-nums}
a{color:#0B5CAD;text-decoration:none}a:hover{text-decoration:underline}
header.top{display:flex;align-items:center;gap:18px;padding:12px 28px;background:#102A43;color:#F0F4F8}
header.top a{color:#F0F4F8}.brand{font-weight:700;font-size:16px;letter-spacing:.02em}
.crumbs{flex:1;color:#BCCCDC;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.crumbs a{color:#BCCCDC}.crumbs strong{color:#FFFFFF}
.credits{font-size:11px;color:#829AB1;padding:8px 16px 16px}.credits a{color:inherit}
.live{font-size:12px;color:#9FB3C8;white-space:nowrap}
.live::before{content:"";display:inline-block;width:8px;height:8px;border-radius:50%;background:#3EBD93;
margin-right:7px;vertical-align:1px}
.live.stale::before{background:#E12D39}
main{max-width:1360px;margin:0 auto;padding:22px 28px 40px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:15px;margin:0 0 2px}
.sub{color:#616E7C;font-size:12.5px;margin:0 0 12px}
.grid{display:grid;grid-template-columns:repeat(12,minmax(0,1fr));gap:16px;margin-top:16px}
.card{background:#FFFFFF;border:1px solid #E4E7EB;border-radius:10px;padding:16px 18px;
box-shadow:0 1px 2px rgba(16,42,67,.05)}
.span-12{grid-column:span 12}.span-8{grid-column:span 8}.span-6{grid-column:span 6}.span-4{grid-column:span 4}
.scroll{overflow-x:auto}
.kpis{display:grid;grid-template-columns:repeat(6,minmax(0,1fr));gap:16px}
.kpi{background:#FFFFFF;border:1px solid #E4E7EB;border-radius:10px;padding:14px 16px}
.kpi .label{color:#616E7C;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.kpi .value{font-size:26px;font-weight:650;margin:2px 0}
.kpi .note{color:#616E7C;font-size:12.5px}
svg.chart{display:block;width:100%;height:auto;max-width:100%}
td svg.chart{width:110px;max-width:none}
svg.chart .hover:hover{fill:rgba(16,42,67,.06)}
table{width:100%;border-collapse:collapse}
th,td{padding:7px 9px;border-bottom:1px solid #EEF1F4;text-align:right;white-space:nowrap}
th{font-size:12px;color:#616E7C;font-weight:600;text-transform:uppercase;letter-spacing:.03em}
tbody tr:hover{background:#F7F9FB}
tbody th{font-size:14px;color:#1F2933;text-transform:none;letter-spacing:0;font-weight:650}
th:first-child,td:first-child{text-align:left}
td.name{max-width:420px;overflow:hidden;text-overflow:ellipsis}
td .minibar{vertical-align:middle;margin-left:8px}
.verdicts{list-style:none;padding:0;margin:14px 0 0}
.verdicts li{padding:9px 12px;border-radius:8px;margin-top:8px;background:#F0F4F8;border-left:4px solid #9FB3C8}
.verdicts li.win{background:#E3F9E5;border-left-color:#3EBD93}
h3{font-size:13px;margin:18px 0 6px;color:#334E68}
.empty{color:#616E7C;padding:18px 0}
.muted{color:#616E7C;font-weight:400;text-transform:none;letter-spacing:0}
tr.group th{text-align:left;background:#F7F9FB;color:#1F2933;font-size:13px;text-transform:none;letter-spacing:0}
td.reasons{text-align:left;white-space:normal}td.reasons a,td.reasons span{white-space:nowrap}
a.reason{border-bottom:1px dotted #0B5CAD}
td.ua{text-align:left;max-width:360px;overflow:hidden;text-overflow:ellipsis}
table.sources th:last-child,table.hits th,table.hits td{text-align:left}
.error{background:#FFE3E3;border:1px solid #FFBDBD;border-radius:10px;padding:16px 18px}
@media (max-width:980px){.span-8,.span-6,.span-4{grid-column:span 12}
.kpis{grid-template-columns:repeat(2,minmax(0,1fr))}}
""".strip()

# Polls the panels endpoint and swaps each [data-panel] by name; pauses while the tab is hidden, never
# overlaps two requests, and says so in the header when the server does not answer.
JS = """
(function () {
  "use strict";
  var main = document.getElementById("main");
  var status = document.getElementById("live");
  var url = main.getAttribute("data-panels");
  var every = Math.max(1, Number(main.getAttribute("data-refresh")) || 5) * 1000;
  var timer = null;
  function schedule() { clearTimeout(timer); timer = setTimeout(refresh, every); }
  function refresh() {
    if (document.hidden) { schedule(); return; }
    fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store"})
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (data) {
        if (main.hasAttribute("data-reload")) { location.reload(); return; }
        Object.keys(data.panels).forEach(function (name) {
          var el = main.querySelector('[data-panel="' + name + '"]');
          if (el) { el.innerHTML = data.panels[name]; }
        });
        status.textContent = "live · updated " + data.updated;
        status.className = "live";
      })
      .catch(function () { status.textContent = "no answer · retrying"; status.className = "live stale"; })
      .then(schedule);
  }
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(); } });
  schedule();
})();
""".strip()


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Only this stylesheet and this script may run: an escaping slip elsewhere could not execute anything.
CONTENT_SECURITY_POLICY = (f"default-src 'none'; script-src {_sha256(JS)}; style-src {_sha256(CSS)}; "
                           "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                           "frame-ancestors 'none'")

# $-placeholders; every value is escaped (or is markup built from escaped parts) before substitution.
PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<link rel="icon" href="data:,">
<noscript><meta http-equiv="refresh" content="$refresh"></noscript>
<style>$css</style>
</head>
<body>
<header class="top">
<a class="brand" href="./">pixeltrack</a>
<nav class="crumbs" aria-label="breadcrumb">$crumbs</nav>
<span class="live" id="live">live · updated $updated</span>
</header>
<main id="main" data-panels="$panels_url" data-refresh="$refresh"$main_attrs>
$body
</main>
<footer class="credits">Country and network data: the NRO and RouteViews, and
<a href="https://db-ip.com">IP Geolocation by DB-IP</a> (CC BY 4.0), via ip-location-db; see docs/data.md.</footer>
<script>$js</script>
</body>
</html>
""")


def page(title: str, crumbs: str, body: str, panels_url: str, refresh_seconds: int, updated: str,
         reload_when_back: bool = False) -> str:
    """A whole page. `title`, `panels_url` and `updated` are escaped by the caller; `crumbs` and
    `body` are markup built from escaped parts. `reload_when_back`: an error page that reloads itself
    once the panels endpoint answers again."""
    return PAGE.substitute(title=title, crumbs=crumbs, body=body, panels_url=panels_url, refresh=refresh_seconds,
                           updated=updated, css=CSS, js=JS, main_attrs=" data-reload" if reload_when_back else "")
