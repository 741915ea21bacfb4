"""`ip__net_contained_or_equal="10.20.30.0/24"`: PostgreSQL's inet `<<=`, served by a GiST index."""

from __future__ import annotations

from typing import Any

from django.db import NotSupportedError
from django.db.models import GenericIPAddressField, Lookup


@GenericIPAddressField.register_lookup
class NetContainedOrEqual(Lookup):
    lookup_name = "net_contained_or_equal"
    prepare_rhs = False  # the value is a network, which the address field would refuse

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        raise NotSupportedError("net_contained_or_equal needs PostgreSQL's inet type.")

    def as_postgresql(self, compiler: Any, connection: Any) -> Any:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} <<= {rhs}::inet", (*lhs_params, *rhs_params)
