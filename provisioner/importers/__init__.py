"""Adapters from other tools' inventories into the provisioner's inventory, and back.

``ansible`` reads Ansible inventories (YAML, INI via ``ansible_ini``, the JSON of
``ansible-inventory --list``) with their ``group_vars``/``host_vars`` folders and resolves each host's
variables with Ansible's precedence; ``k3s_ansible`` and ``kubespray`` map those variables to the
native model; ``render`` writes the native YAML with a comment naming where each value came from;
``export`` writes a native inventory back as a k3s-ansible inventory.
"""

from __future__ import annotations
