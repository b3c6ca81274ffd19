"""The model registry: signed bundles as immutable numbered versions, aliases with history, lineage,
verification, and export/import between projects.

    bundles.py    the signed bundle manifest and the checks before any use
    core.py       Registry: register, versions, resolve, verify, load_model, promote, rollback
    aliases.py    alias moves: compare-and-swap, history and audit record in one transaction
    records.py    the signed records of each version's registration and each alias move
    integrity.py  rows and aliases checked against those records and the audit log
    tables.py     the registry's tables (models, versions, status, lineage facts, records, aliases, history)
    repository.py RegistryRepository: the only SQL on those tables
    lineage.py    what made a version; which versions a dataset fed
    transport.py  the single-file export archive and its verified import
"""

from keelml.names import PRODUCTION
from keelml.registry.aliases import AliasChange
from keelml.registry.bundles import BUNDLE_FORMAT, COMPONENTS, build_bundle, check_bundle
from keelml.registry.core import LoadedModel, Registry
from keelml.registry.status import Registration

__all__ = ["BUNDLE_FORMAT", "COMPONENTS", "PRODUCTION", "AliasChange", "LoadedModel", "Registration", "Registry",
           "build_bundle", "check_bundle"]
