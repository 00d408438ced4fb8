"""edrfleet.fleet"""
