"""Meta Marketing API slice: client, resource, assets (ad accounts, hierarchy, daily insights), checks."""
