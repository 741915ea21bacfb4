"""The staff admin, registered module by module, each one job:

- admin_base: scoping to partners and role-based permissions, shared by every page;
- admin_scale: what keeps lists fast at a million rows (address search, filters, paginator);
- admin_partners: partners, memberships, campaigns;
- admin_owners: server owners, contacts, attributions;
- admin_cases (with admin_case_display): cases and their events;
- admin_suppressions: addresses no letter may go to;
- admin_intake: target imports and attribution runs;
- admin_scanning: targets, findings, scan runs, exclusions, canary hits. Scanning's models are
  scoped through their owner, which only campaign knows, so their admin lives here;
- admin_system: accounts, devices, lockouts and schedules, superusers only.

Importing them registers the pages, in this order. Case sequences are bookkeeping for
references (SYS-<year>-<n>): no one works with them, so they have no admin page.
"""

# The order of registration is the order of these imports.
# isort: off
from campaign import admin_partners  # noqa: F401
from campaign import admin_owners  # noqa: F401
from campaign import admin_cases  # noqa: F401
from campaign import admin_suppressions  # noqa: F401
from campaign import admin_intake  # noqa: F401
from campaign import admin_scanning  # noqa: F401
from campaign import admin_system  # noqa: F401
# isort: on
