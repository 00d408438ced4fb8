"""edrfleet.cli"""
