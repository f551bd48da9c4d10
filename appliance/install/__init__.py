"""Install, upgrade, roll back and uninstall the appliance on a host from a verified bundle."""

from appliance.install.layout import DEFAULT_PREFIX, InstallPaths, InstallRecord
from appliance.install.service import InstallError, InstallOptions, install, rollback, uninstall

__all__ = ["DEFAULT_PREFIX", "InstallError", "InstallOptions", "InstallPaths", "InstallRecord", "install",
           "rollback", "uninstall"]
