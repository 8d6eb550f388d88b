"""TEST DOUBLES: stand-ins for k3s, the kubelet and kubeadm, for the provisioner's lab only.

Never product code: the lab hosts have no internet access, so the real binaries cannot be
fetched. Each stand-in is a package here (``k3s``, ``kubelet``, ``kubeadm``); the kubelet
imports the k3s package's API server, kubeadm imports both. provisioner_lab/zipapps.py builds
each one into a single executable (a Python zipapp holding this package as top-level
``standin``) that the lab copies to its hosts. Modules here use relative imports only and the
standard library plus python3-cryptography/python3-yaml (imported lazily), so that they run
with the hosts' /usr/bin/python3. See README.md beside this file.
"""
