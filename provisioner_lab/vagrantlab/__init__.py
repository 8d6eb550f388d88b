"""TEST LAB TOOLING for the Vagrant path (not product code): a locally built Debian box for
vagrant-libvirt, a private libvirtd for machines without systemd as PID 1, and the link to the
k3s stand-in that the VMs get as their air-gap files. The product package never imports it.
"""
