"""Maintainer tool: rebuilds the shipped open country and ASN databases (processors/data/geo-*.mmdb).

Not used at run time (it needs mmdb-writer and netaddr, dev dependencies). Input: the unpacked npm
packages `@ip-location-db/asn` (CSV) and `@ip-location-db/geo-whois-asn-country-mmdb` (MMDB), e.g.

    npm pack @ip-location-db/asn @ip-location-db/geo-whois-asn-country-mmdb
    mkdir asn country && tar xzf ip-location-db-asn-*.tgz -C asn && tar xzf ip-location-db-geo-*.tgz -C country
    python -m processors.geodata_build asn/package country/package

Both become MaxMind-format databases (IPv6 trees with IPv4 at ::/96): the country file keeps its
`country_code` records, the ASN CSVs (inclusive address ranges) take the GeoLite2-ASN record shape, so
the Enricher reads shipped and MaxMind files alike. Special-purpose blocks (private, loopback,
documentation, CGNAT, 6to4, …) are cut out of both: the upstream data gives e.g. 192.168.0.0/16 a
country, and a hit from a LAN must have no place. docs/data.md says where each comes from.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
COUNTRY_FILE = "geo-country.mmdb"
ASN_FILE = "geo-asn.mmdb"
# IANA special-purpose blocks that are not globally routed (RFC 6890 and successors), and 6to4 / NAT64
# prefixes that only embed IPv4 addresses.
SPECIAL = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
           "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
           "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "::/128", "::1/128", "::ffff:0:0/96",
           "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001:db8::/32", "2002::/16", "3fff::/20",
           "fc00::/7", "fe80::/10", "ff00::/8")


def _public(nets: Any) -> Any:
    from netaddr import IPSet

    return IPSet(nets) - IPSet(SPECIAL)


def build_asn(package: Path, out: Path, version: str) -> int:
    """Writes the ASN database from the package's asn-ipv4.csv and asn-ipv6.csv; returns rows read."""
    from mmdb_writer import MmdbU32, MMDBWriter
    from netaddr import IPRange

    by_as: dict[tuple[int, str], list[IPRange]] = defaultdict(list)
    rows = 0
    for name in ("asn-ipv4.csv", "asn-ipv6.csv"):
        with open(package / name, newline="", encoding="utf-8") as f:
            for start, end, number, org in csv.reader(f):
                rows += 1
                n = int(number)
                if n <= 0:
                    continue
                by_as[(n, org.strip())].append(IPRange(start, end))
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="pixeltrack-ASN",
                        languages=["en"],
                        description={"en": f"IP to ASN from @ip-location-db/asn {version} "
                                           "(RouteViews, NRO, DB-IP Lite; CC BY 4.0)"})
    for (n, org), ranges in by_as.items():
        writer.insert_network(_public(ranges), {"autonomous_system_number": MmdbU32(n),
                                              "autonomous_system_organization": org})
    writer.to_db_file(str(out))
    return rows


def build_country(source: Path, out: Path, version: str) -> int:
    """Rewrites the package's MaxMind country database without the special-purpose blocks; returns
    the networks read."""
    import maxminddb
    from mmdb_writer import MMDBWriter

    by_cc: dict[str, list[str]] = defaultdict(list)
    rows = 0
    with maxminddb.open_database(str(source), maxminddb.MODE_MMAP) as reader:
        for network, record in reader:
            rows += 1
            cc = record.get("country_code") if isinstance(record, dict) else None
            if isinstance(cc, str) and len(cc) == 2:
                by_cc[cc].append(str(network))
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="pixeltrack-Country",
                        languages=["en"],
                        description={"en": f"IP to country from @ip-location-db/geo-whois-asn-country-mmdb "
                                           f"{version} (NRO; CC BY 4.0)"})
    for cc, nets in by_cc.items():
        writer.insert_network(_public(nets), {"country_code": cc})
    writer.to_db_file(str(out))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("asn_package", type=Path, help="unpacked @ip-location-db/asn package folder")
    ap.add_argument("country_package", type=Path, help="unpacked @ip-location-db/geo-whois-asn-country-mmdb folder")
    ap.add_argument("--out", type=Path, default=DATA, help="output folder (default: processors/data)")
    args = ap.parse_args(argv)
    asn_version = json.loads((args.asn_package / "package.json").read_text())["version"]
    country_version = json.loads((args.country_package / "package.json").read_text())["version"]
    t0 = time.perf_counter()
    nets = build_country(args.country_package / "geo-whois-asn-country.mmdb", args.out / COUNTRY_FILE,
                         country_version)
    rows = build_asn(args.asn_package, args.out / ASN_FILE, asn_version)
    print(f"{nets} country networks ({country_version}) and {rows} ASN ranges ({asn_version}) "
          f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
