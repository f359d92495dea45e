# my_tools.py
WEATHER = {"Paris": 21, "Oslo": 9}
RATES = {"EUR": 0.92, "NOK": 10.6}


def get_weather(city: str, unit: str = "C") -> dict:
    """Current weather of a city."""
    if city not in WEATHER:
        raise KeyError(f"unknown city {city!r}")  # the planner sees the error and can re-plan
    temp = WEATHER[city] if unit == "C" else WEATHER[city] * 9 / 5 + 32
    return {"city": city, "temp": temp, "unit": unit}


def convert(amount: float, to: str) -> float:
    """Convert US dollars to another currency."""
    return round(amount * RATES[to], 2)
