"""The model registry: signed bundles as immutable numbered versions, aliases with history, lineage,
verification, and export/import between projects.

    bundles.py    the signed bundle manifest and the checks before any use
    core.py       Registry: register, versions, resolve, verify, load_model, promote, rollback
    aliases.py    alias moves: compare-and-swap, history and audit record in one transaction
    tables.py     the registry's tables (models, versions, status, lineage facts, aliases, history)
    repository.py RegistryRepository: the only SQL on those tables
    lineage.py    what made a version; which versions a dataset fed
    transport.py  the single-file export archive and its verified import
"""

from keelml.names import PRODUCTION
from keelml.registry.aliases import AliasChange
from keelml.registry.bundles import BUNDLE_FORMAT, COMPONENTS, build_bundle, check_bundle
from keelml.registry.core import LoadedModel, Registration, Registry

__all__ = ["BUNDLE_FORMAT", "COMPONENTS", "PRODUCTION", "AliasChange", "LoadedModel", "Registration", "Registry",
           "build_bundle", "check_bundle"]
