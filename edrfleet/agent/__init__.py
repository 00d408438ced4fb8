"""edrfleet.agent"""
