"""Vocabulary of the synthetic DiffusionDB-style generator.

Compiled by hand from reading real DiffusionDB prompts (the 5k-prompt sample): a prompt is a
subject phrase followed by comma-separated modifiers. Modifiers are listed roughly by how often
they occur there (the generator draws them with Zipf weights in this order), so the head of
:data:`MODIFIERS` ("highly detailed", "8 k", "artstation", ...) dominates as it does in the real
data. Real prompts write "8 k", "4 k", "3 d" with a space (DiffusionDB's tokenised export); kept.
"""

from __future__ import annotations

# Word lists read best packed; the formatter would put one word per line.
# fmt: off
# Subject templates; {a} adjective, {n} noun, {s} setting, {p} person/character, {m} material,
# {w} wearable, {x} a made-up two-word name (see SYLLABLES). The first SHORT_TEMPLATES are the
# short ones that plain prompts (no style) use.
SHORT_TEMPLATES = 12
TEMPLATES = (
    "{a} {n}", "{n} {s}", "{p} {s}", "{a} {p}", "a {n} made of {m}", "a cute {n} wearing a {w}",
    "{p} as a {n}", "photo of a {a} {n}", "{x}", "{x} {s}", "{p} meets {x}", "a {a} {n} called {x}",
    "portrait of {x}, {a} {n}", "{x}, the {a} {n} {s}", "the city of {x} {s}", "a {a} {n} {s}",
    "portrait of {p}, {a} {n}", "a portrait of {p}, {a} {n}", "a painting of a {a} {n} {s}",
    "concept art of a {n} {s}", "a photo of a {a} {n}", "close up of a {a} {n}", "{a} {n} {s}",
    "full body portrait of {p} {s}", "an illustration of a {a} {n} {s}", "a cinematic still of {p} {s}",
    "a renaissance portrait of {p} {s}", "epic battle between a {n} and {p} {s}", "a {a} {n} and a {n2} {s}",
    "beautiful landscape with a {a} {n} {s}",
)

# Syllables of made-up names: real prompts are full of names no list holds (people, characters,
# places, invented words); three syllables make a word, two words a name.
SYLLABLES = (
    "ka", "lo", "mi", "ren", "tha", "vor", "zu", "bel", "dra", "gon", "shi", "tak", "mar", "en", "qui", "sol",
    "fen", "ith", "nox", "pa", "ru", "sel", "tor", "ul", "wyn", "xa", "yor", "zel", "an", "bri", "cor", "del",
)

ADJECTIVES = (
    "beautiful", "cute", "giant", "ancient", "futuristic", "cyberpunk", "steampunk", "mysterious", "dark",
    "glowing", "colorful", "tiny", "majestic", "abandoned", "haunted", "biomechanical", "ethereal", "gothic",
    "retro", "surreal", "epic", "cosmic", "golden", "crystal", "neon", "elegant", "fluffy", "angry", "sad",
    "happy", "old", "young", "armored", "floating", "burning", "frozen", "ornate", "psychedelic",
    "minimalist", "medieval", "alien", "robotic", "magical", "enchanted", "massive", "lonely", "strange",
    "horrifying", "whimsical", "intricate", "rusty", "overgrown", "holographic", "translucent", "melting",
    "mechanical", "wise", "fierce", "sleepy", "smiling", "tired", "wet", "broken", "hollow", "luminous",
    "shadowy", "baroque", "victorian", "tribal", "porcelain", "wooden", "feathered", "mossy", "sunlit",
    "stormy", "quiet", "noisy", "crowded", "empty", "vintage", "brutalist", "art deco", "solarpunk",
    "dieselpunk", "kawaii", "grotesque", "regal", "humble", "tiny", "enormous", "skeletal", "chubby",
    "slender",
    "radiant", "somber", "serene", "chaotic", "melancholic", "joyful", "furious", "gloomy", "dreamy", "hazy",
    "misty", "dusty", "muddy", "snowy", "icy", "fiery", "molten", "electric", "magnetic", "iridescent",
    "opalescent", "metallic", "chrome", "silver", "bronze", "copper", "obsidian", "emerald", "sapphire",
    "ruby", "amber", "ivory", "ebony", "crimson", "scarlet", "azure", "turquoise", "violet", "lavender",
    "pastel", "monochrome", "sepia", "faded", "weathered", "crumbling", "ruined", "pristine", "gleaming",
    "polished", "tattered", "ragged", "noble", "royal", "sacred", "cursed", "blessed", "demonic", "angelic",
    "divine", "infernal", "celestial", "lunar", "solar", "astral", "primordial", "prehistoric", "industrial",
    "rustic", "tropical", "arctic", "nocturnal", "wild", "feral", "gentle", "brave", "lazy", "curious",
    "mischievous", "grumpy", "cheerful", "shy", "proud", "lost", "forgotten", "hidden", "secret", "forbidden",
    "infinite", "miniature", "colossal", "towering", "twisted", "crooked", "geometric", "fractal", "organic",
    "fungal", "crystalline", "inflatable", "knitted", "origami", "velvet", "silky", "fuzzy", "spiky", "slimy",
    "glossy", "rainbow", "pixelated",
)

NOUNS = (
    "cat", "dog", "dragon", "robot", "castle", "city", "forest", "woman", "man", "girl", "warrior", "wizard",
    "knight", "witch", "astronaut", "spaceship", "tree", "house", "temple", "tower", "owl", "fox", "wolf",
    "lion", "tiger", "horse", "deer", "frog", "octopus", "whale", "jellyfish", "mushroom", "flower", "garden",
    "mountain", "island", "lighthouse", "cathedral", "library", "train", "car", "motorcycle", "samurai",
    "ninja", "pirate ship", "mermaid", "goddess", "angel", "demon", "skull", "monster", "creature", "golem",
    "mech", "cyborg", "android", "elf", "dwarf", "goblin", "queen", "king", "princess", "soldier",
    "detective", "scientist", "chef", "musician", "dancer", "monk", "priest", "valkyrie", "phoenix",
    "unicorn", "griffin", "kraken", "cthulhu", "alien", "portal", "waterfall", "river", "desert", "volcano",
    "planet", "galaxy", "nebula", "moon", "sun", "storm", "village", "market", "street", "alley", "bridge",
    "ruins", "palace", "throne room", "tavern", "bedroom", "kitchen", "cafe", "spaceport", "factory",
    "laboratory", "battlefield", "graveyard", "swamp", "jungle", "cave", "canyon", "beach", "ocean", "lake",
    "field", "meadow", "bear", "rabbit", "penguin", "raven", "hummingbird", "butterfly", "beetle", "snail",
    "crab", "shark", "dolphin", "turtle", "elephant", "giraffe", "gorilla", "panda", "koala", "hedgehog",
    "squirrel", "otter", "parrot", "peacock", "swan", "eagle", "bat", "spider", "scorpion", "serpent",
    "hydra", "minotaur", "centaur", "sphinx", "yeti", "werewolf", "vampire", "zombie", "ghost", "skeleton",
    "scarecrow", "clown", "jester", "doll", "teddy bear", "toy soldier", "submarine", "airship",
    "hot air balloon", "bicycle", "tank", "helicopter", "rocket", "satellite", "space station", "skyscraper",
    "cottage", "windmill", "barn", "greenhouse", "subway station", "diner", "bookstore", "museum",
    "opera house", "theater", "arcade", "casino", "hospital", "prison", "school", "church", "mosque",
    "pagoda", "pyramid", "colosseum", "aqueduct", "fortress", "bunker", "oil rig", "treehouse", "shipwreck",
    "lantern", "clock", "chessboard", "teapot", "hamburger", "pizza", "sushi", "cake", "ice cream",
    "coffee cup", "wine glass", "guitar", "piano", "violin", "typewriter", "camera", "computer", "television",
    "smartphone", "sneaker", "handbag", "chair", "throne", "sword", "shield", "crown", "mask", "helmet",
    "book", "map", "mirror", "door", "window", "staircase", "fountain",
    "axolotl", "capybara", "raccoon", "red panda", "lynx", "jaguar", "leopard", "cheetah", "bison", "moose",
    "reindeer", "camel", "llama", "alpaca", "hippo", "rhino", "crocodile", "iguana", "chameleon", "gecko",
    "salamander", "toad", "seahorse", "stingray", "orca", "narwhal", "walrus", "seal", "pelican", "flamingo",
    "heron", "toucan", "macaw", "cockatoo", "magpie", "crow", "sparrow", "falcon", "hawk", "vulture",
    "albatross", "puffin", "moth", "dragonfly", "ladybug", "bumblebee", "mantis", "centipede", "firefly",
    "koi fish", "goldfish", "piranha", "anglerfish", "lobster", "squid", "nautilus", "starfish", "coral reef",
    "sea turtle", "tortoise", "hamster", "ferret", "badger", "beaver", "porcupine", "armadillo", "sloth",
    "lemur", "orangutan", "chimpanzee", "meerkat", "hyena", "coyote", "fennec fox", "polar bear",
    "grizzly bear", "mammoth", "sabertooth tiger", "dinosaur", "t - rex", "velociraptor", "pterodactyl",
    "triceratops", "basilisk", "chimera", "manticore", "wyvern", "leviathan", "banshee", "wraith", "lich",
    "ogre", "troll", "orc", "gnome", "fairy", "pixie", "nymph", "dryad", "satyr", "harpy", "gorgon",
    "cyclops", "titan", "djinn", "kitsune", "oni", "hourglass", "compass", "telescope", "microscope", "globe",
    "candle", "chandelier", "grandfather clock", "music box", "gramophone", "radio", "jukebox",
    "vending machine", "phone booth", "mailbox", "umbrella", "kite", "balloon", "carousel", "ferris wheel",
    "roller coaster", "tent", "campfire", "suitcase", "treasure chest", "key", "potion", "scroll", "grimoire",
    "amulet", "ring", "necklace", "scepter", "chalice", "dagger", "axe", "spear", "bow", "crossbow", "cannon",
    "revolver", "katana", "lightsaber", "jetpack", "hoverboard", "skateboard", "surfboard", "sailboat",
    "canoe", "yacht", "steam locomotive", "tram", "bus", "truck", "tractor", "excavator", "race car",
    "vintage car", "muscle car", "taxi", "ambulance", "fire truck", "zeppelin", "biplane", "fighter jet",
    "ufo", "mothership", "starship", "space shuttle", "mars rover", "drone", "robot dog", "ramen",
    "dumplings", "croissant", "donut", "pancakes", "waffles", "burrito", "taco", "hot dog", "watermelon",
    "pineapple", "strawberry", "banana", "avocado", "cherry", "lemon", "pumpkin", "cupcake", "macaron",
    "cheese", "bread", "noodles", "bubble tea", "cocktail", "skyline", "harbor", "pier", "bazaar",
    "monastery", "shrine", "ziggurat", "obelisk", "catacombs", "crypt", "mausoleum", "observatory",
    "aquarium", "circus", "amusement park", "stadium", "arena", "office", "classroom", "attic", "basement",
    "garage", "workshop", "forge", "quarry", "mine", "oasis", "glacier", "fjord", "geyser", "lagoon", "marsh",
    "tundra", "savanna", "vineyard", "orchard", "rice field", "rainforest", "cliff", "valley", "crater",
    "asteroid", "black hole", "supernova", "space elevator", "dyson sphere", "megastructure", "favela",
    "suburb", "motel", "gas station", "highway", "tunnel", "dam", "power plant", "server room",
    "train station", "airport", "astronomer", "alchemist", "archer", "assassin", "barbarian", "bard",
    "cleric", "druid", "paladin", "ranger", "rogue", "sorceress", "warlock", "nomad", "explorer", "mercenary",
    "gunslinger", "sheriff", "outlaw", "pilgrim", "prophet", "oracle", "hermit", "peasant", "merchant",
    "empress", "emperor", "prince", "acrobat", "magician", "puppeteer", "clockmaker", "cartographer",
    "botanist", "architect", "surgeon", "diver", "miner", "lumberjack", "shepherd", "baker", "barista",
    "student", "grandfather", "toddler", "twins", "gamer", "rapper", "drummer", "violinist", "opera singer",
    "bride",
)

SETTINGS = (
    "in a forest", "in space", "on the moon", "in a cyberpunk city", "at sunset", "at night", "in the rain",
    "under the sea", "in the desert", "on a mountain", "in a castle", "in tokyo", "in new york", "in paris",
    "in a dystopian future", "in a fantasy world", "in a post apocalyptic wasteland", "in the clouds",
    "on an alien planet", "in a dark dungeon", "in a flower field", "in a library", "in a neon lit alley",
    "in the snow", "on fire", "underwater", "in a swamp", "in a temple", "inside a cathedral", "on a beach",
    "in the jungle", "in a spaceship", "during a storm", "at golden hour", "in the mist", "in a dream",
    "surrounded by flowers", "surrounded by butterflies", "with long flowing hair", "wearing armor",
    "holding a sword", "riding a horse", "with glowing eyes", "in a victorian dress", "in a sci - fi suit",
    "in a bamboo forest", "on a rooftop", "in a subway", "in a greenhouse", "in a junkyard",
    "in a laboratory", "in a war zone", "in the arctic", "in the savanna", "in venice", "in london",
    "in rome", "in ancient egypt", "in ancient greece", "in feudal japan", "in the wild west",
    "in the 1 9 2 0 s", "in the 1 9 8 0 s", "in a medieval village", "in a steampunk city",
    "in a haunted house", "in a graveyard at midnight", "on a frozen lake", "on a tropical island",
    "in a crystal cave", "inside a volcano", "at dawn", "at dusk", "under the northern lights",
    "under a full moon", "under cherry blossoms", "in autumn", "in spring", "in winter", "in a thunderstorm",
    "in the fog", "on a battlefield", "in a nightclub", "in a museum", "in a cozy living room", "on a train",
    "on a pirate ship", "in an elevator", "inside a computer", "in the metaverse", "in a video game",
    "in a snow globe",
)

PEOPLE = (
    "a beautiful woman", "an old man", "a young girl", "a cyberpunk hacker", "a knight", "a wizard",
    "a queen", "a samurai", "a viking warrior", "an elf princess", "a steampunk inventor", "a space marine",
    "a witch", "a pirate captain", "a medieval king", "an astronaut", "a robot", "a cyborg", "a goddess",
    "a vampire", "dwayne johnson", "will ferrell", "keanu reeves", "elon musk", "taylor swift", "emma watson",
    "tom cruise", "nicolas cage", "danny devito", "barack obama", "donald trump", "shrek", "mario", "pikachu",
    "batman", "spider - man", "darth vader", "gandalf", "harry potter", "walter white", "mr bean",
    "the joker", "wonder woman", "iron man", "homer simpson", "kermit the frog", "jesus",
    "a lakota sioux goddess", "a dancing eagle woman", "an asian valkyrie with long black hair",
    "a female paladin", "a dark elf", "a necromancer", "a tiefling bard", "a forest druid", "a geisha",
    "a pharaoh", "a roman emperor", "a firefighter", "a ballerina", "a cowboy", "a nun", "a sumo wrestler",
    "a punk rocker", "a grandmother", "a little boy", "a businessman", "a nurse", "a farmer", "a fisherman",
    "a street vendor", "a jazz singer", "a boxer", "a skateboarder", "a surfer", "a mountain climber",
    "a beekeeper", "a blacksmith", "a tailor", "a librarian", "a mechanic", "a pilot", "a sailor",
    "a gardener", "a painter", "a poet", "a chess player", "a hacker", "a spy", "a bounty hunter",
    "a gladiator", "a shaman", "a monk", "albert einstein", "frida kahlo", "napoleon", "cleopatra",
    "abraham lincoln", "marilyn monroe", "snoop dogg", "gordon ramsay", "morgan freeman",
    "scarlett johansson", "margot robbie", "zendaya", "billie eilish", "lady gaga", "kanye west",
    "jeff bezos", "mark zuckerberg", "bill gates", "sonic the hedgehog", "master chief", "link from zelda",
    "geralt of rivia", "lara croft", "totoro", "godzilla", "king kong", "yoda", "chewbacca", "thanos",
    "deadpool", "wolverine", "superman",
    "brad pitt", "angelina jolie", "leonardo dicaprio", "johnny depp", "will smith", "tom hanks",
    "meryl streep", "natalie portman", "anne hathaway", "jennifer lawrence", "ryan gosling", "ryan reynolds",
    "chris hemsworth", "chris evans", "robert downey jr", "benedict cumberbatch", "henry cavill", "gal gadot",
    "emma stone", "emilia clarke", "kit harington", "peter dinklage", "jason momoa", "idris elba",
    "keira knightley", "cate blanchett", "tilda swinton", "willem dafoe", "christopher walken", "bill murray",
    "jack black", "steve buscemi", "samuel l jackson", "arnold schwarzenegger", "sylvester stallone",
    "bruce lee", "jackie chan", "bob ross", "mona lisa", "queen elizabeth", "winston churchill", "joe biden",
    "vladimir putin", "kim jong un", "the pope", "princess diana", "michael jackson", "elvis presley",
    "freddie mercury", "david bowie", "beyonce", "rihanna", "ariana grande", "dua lipa", "harry styles",
    "eminem", "lebron james", "cristiano ronaldo", "lionel messi", "mickey mouse", "donald duck",
    "bugs bunny", "scooby doo", "spongebob", "garfield", "snoopy", "pinocchio", "alice in wonderland",
    "the mad hatter", "peter pan", "captain hook", "sherlock holmes", "dracula", "frankenstein's monster",
    "the grim reaper", "santa claus", "a leprechaun", "zeus", "poseidon", "hades", "athena", "anubis", "odin",
    "thor", "loki", "hercules", "achilles", "king arthur", "merlin", "robin hood", "joan of arc",
    "genghis khan", "julius caesar", "a plague doctor", "a mad scientist", "a space pirate", "a desert nomad",
    "an arctic explorer", "a deep sea diver", "a royal guard", "a fortune teller", "a street musician",
    "a tattoo artist", "a goth girl", "an anime girl", "a magical girl", "a catgirl", "a fairy queen",
    "a witch hunter", "a demon hunter", "a cyberpunk samurai", "a steampunk pilot", "a viking shieldmaiden",
    "an egyptian queen", "an aztec warrior",
)

MATERIALS = (
    "glass", "gold", "crystals", "liquid metal", "flowers", "clouds", "fire", "ice", "wood", "paper", "candy",
    "bubbles", "lego", "jade", "marble", "smoke", "light", "porcelain", "yarn", "chocolate",
)

WEARABLES = (
    "hat", "crown", "scarf", "hoodie", "space suit", "kimono", "tuxedo", "flower crown", "top hat",
    "backpack",
)

# Longer descriptive fragments that real prompts put between the subject and the style tags.
DETAILS = (
    "wearing headdress of tribal peacock feathers and flowers", "with long flowing fur blowing in the wind",
    "beautiful woman caring for peonies", "spotlight on the woman", "pay attention to facial details",
    "short dark brown messy pixie haircut", "slightly rounded face", "wet - on - wet technique",
    "intricate textures", "illusionistic detail", "interesting pastel colour palette",
    "glittering light leaks", "large black eyes!!!", "rays of light through the clouds",
    "very sad and reluctant expression", "wearing a biomechanical suit",
    "made of liquid, bubbles and crystals", "surrounded by glowing runes",
    "standing in front of a huge portal", "looking at the camera", "in the style of a 1 9 8 0 s movie poster",
    "reflections in the water", "smoke and dust in the air", "dramatic cinematic atmosphere",
    "a sense of awe and wonder", "beautiful detailed eyes", "highly detailed face and skin",
    "full body shot from below", "soft morning light from the window", "cherry blossoms falling all around",
    "a lone figure in the distance", "ancient runes carved in stone",
    "wearing ornate golden armor with gemstones", "holding a glowing crystal staff",
    "with a cute cat on her lap", "ultra realistic facial features", "perfectly symmetrical face",
    "flowing silk robes", "thunder and lightning in the background", "a crowd of people watching",
)

# Style, quality and rendering modifiers, most frequent first.
MODIFIERS = (
    "highly detailed", "8 k", "artstation", "trending on artstation", "sharp focus", "digital painting",
    "concept art", "octane render", "illustration", "intricate", "4 k", "detailed painting", "elegant",
    "smooth", "cinematic lighting", "fantasy", "cinematic", "digital art", "hd", "unreal engine",
    "masterpiece", "volumetric lighting", "hyper detailed", "cyberpunk", "high quality", "sharp",
    "ray tracing", "realistic lighting", "detailed", "oil on canvas", "depth of field", "large scale",
    "intricate detail", "noir", "portrait", "sci - fi", "high detail", "dramatic lighting", "dramatic",
    "fine art", "neon lighting", "very detailed", "ultra detailed", "dungeons and dragons", "film",
    "golden ratio", "deviantart", "hyperrealistic", "realistic", "beautiful", "studio lighting",
    "photorealistic", "studio quality", "smooth render", "unreal engine 5 rendered", "rays of light",
    "photoreal", "pixiv", "photograph", "3 d", "vibrant colors", "an ultrafine detailed painting", "ornate",
    "official art", "ultra definition", "beautiful light", "featured on pixiv", "anime aesthetic",
    "volumetric light", "mist", "extremely detailed", "very coherent", "super detailed", "artstation hq",
    "chinese fantasy", "highly realistic", "oil painting", "gothic", "beautiful face", "futuristic",
    "intricate details", "unsettling", "cgsociety", "strange", "warm aesthetic", "coherent composition",
    "steampunk", "matte painting", "redshift render", "global illumination", "contrast", "dof", "ue 4",
    "anime", "soft lighting", "behance", "maximalist", "chibi", "liminal space", "symmetrical",
    "8 k resolution", "intricate complexity", "digital photography", "high resolution", "perfect face",
    "d & d", "dynamic", "award winning", "colorful", "drawing", "cryengine", "motion blur", "natural pose",
    "fog", "movie still", "bright colors", "radiant light", "medium shot", "digital illustration",
    "golden hour", "hdr", "insanely detailed", "zbrush", "surrealism", "hyper realism", "epic lighting",
    "photography", "postapocalyptic", "three quarter profile view", "wide angle", "35 mm", "bokeh",
    "sticker vinyl decal", "watercolor", "pastel colors", "dark fantasy", "vaporwave", "synthwave",
    "low poly", "isometric", "pixel art", "ukiyo - e", "art nouveau", "baroque", "impressionism",
    "centered composition", "lens flare", "rim light", "subsurface scattering", "atmospheric", "moody",
    "ethereal", "epic composition", "trending on cgsociety", "award - winning photograph", "hasselblad",
    "kodak portra 4 0 0", "sigma 8 5 mm", "f / 1. 8", "tilt shift", "vfx", "houdini", "blender", "polycount",
    "artstation trending", "vivid colors", "mystical", "whimsical", "eerie",
)

ARTISTS = (
    "greg rutkowski", "artgerm", "alphonse mucha", "wlop", "ilya kuvshinov", "james jean", "makoto shinkai",
    "peter mohrbacher", "beeple", "rossdraws", "magali villeneuve", "tom bagshaw", "klimt", "claude monet",
    "vincent van gogh", "rembrandt", "craig mullins", "loish", "krenz cushart", "feng zhu", "jeremy mann",
    "dan mumford", "michael whelan", "zdzislaw beksinski", "hayao miyazaki", "studio ghibli", "moebius",
    "syd mead", "victo ngai", "ross tran", "tooth wu", "donato giancola", "yoshitaka amano", "frank frazetta",
    "boris vallejo", "edward hopper", "john singer sargent", "caravaggio", "h. r. giger", "simon stalenhag",
    "thomas kinkade", "james gurney", "kim jung gi", "jesper ejsing", "justin gerard", "gaston bussiere",
    "norman rockwell", "salvador dali", "ruan jia", "charlie bowater", "lois van baarle", "rhads",
    "sakimichan", "stanley artgerm lau", "wayne barlowe", "brom", "anato finnstark", "noriyoshi ohrai",
    "vladimir motsar", "ohara koson", "hokusai", "ivan aivazovsky", "john howe", "alan lee", "tim burton",
    "wes anderson", "james gilleard", "atey ghailan", "josan gonzalez", "kilian eng", "android jones",
)
# fmt: on

# Detail phrases a prompt puts between its subject and its style, with the same placeholders as
# TEMPLATES. Real prompts are coherent: their details return to the words of their subject (an
# idea's "theme" fills most placeholders), which keeps unrelated prompts apart under a sentence
# embedder; random words from the whole list would average every long prompt to one centre.
# fmt: off
PHRASES = (
    "{a} {n}", "{n}", "{s}", "{a} {m}", "{n} and {n2}", "{x}", "{p}", "{a} {n} {s}", "{m} {n}",
    "{a} and {a2}", "{n} {s}", "{a} {n2}", "{a} {m} {n}", "{p} {s}", "with {a} {n}", "wearing a {a} {w}",
    "holding a {n}", "{n} made of {m}", "{a} {n} in the background", "surrounded by {n}", "the {n} of {x}",
    "in the style of {x}", "{a} eyes",
)
# fmt: on

# Style families: modifiers that real prompts use together (a digital-art block, a photo block, a
# render block, ...). An idea draws its style from one or two families, again so that unrelated
# styled prompts are not all alike; the frequency order of MODIFIERS still gives the head.
# fmt: off
STYLE_FAMILIES = (
    ("highly detailed", "intricate", "hyper detailed", "detailed", "intricate detail", "high detail",
     "very detailed", "ultra detailed", "extremely detailed", "super detailed", "intricate details",
     "intricate complexity", "insanely detailed", "very coherent", "large scale", "8 k", "4 k", "hd",
     "8 k resolution", "high resolution", "ultra definition", "high quality", "sharp focus", "sharp"),
    ("artstation", "trending on artstation", "digital painting", "concept art", "illustration",
     "digital art", "artstation hq", "artstation trending", "deviantart", "cgsociety",
     "trending on cgsociety", "behance", "official art", "digital illustration", "matte painting", "smooth",
     "elegant", "sharp focus", "fantasy"),
    ("detailed painting", "oil on canvas", "oil painting", "fine art", "an ultrafine detailed painting",
     "masterpiece", "art nouveau", "baroque", "impressionism", "watercolor", "drawing", "golden ratio",
     "ornate", "surrealism", "beautiful", "elegant", "pastel colors", "whimsical"),
    ("octane render", "unreal engine", "unreal engine 5 rendered", "ray tracing", "redshift render",
     "global illumination", "cryengine", "ue 4", "vfx", "houdini", "blender", "zbrush", "polycount", "3 d",
     "smooth render", "subsurface scattering", "low poly", "isometric", "sticker vinyl decal", "pixel art",
     "volumetric lighting"),
    ("photograph", "photography", "photorealistic", "photoreal", "realistic", "hyperrealistic",
     "highly realistic", "hyper realism", "digital photography", "award - winning photograph", "hasselblad",
     "kodak portra 4 0 0", "sigma 8 5 mm", "f / 1. 8", "35 mm", "bokeh", "depth of field", "dof",
     "tilt shift", "wide angle", "medium shot", "studio lighting", "movie still", "film", "natural pose",
     "three quarter profile view", "portrait", "centered composition", "symmetrical", "perfect face",
     "beautiful face", "studio quality"),
    ("cinematic lighting", "cinematic", "dramatic lighting", "dramatic", "volumetric light", "rays of light",
     "beautiful light", "soft lighting", "realistic lighting", "epic lighting", "rim light", "radiant light",
     "golden hour", "lens flare", "atmospheric", "moody", "mist", "fog", "contrast", "hdr", "motion blur",
     "epic composition", "coherent composition", "dynamic"),
    ("fantasy", "dark fantasy", "dungeons and dragons", "d & d", "chinese fantasy", "gothic", "mystical",
     "ethereal", "eerie", "unsettling", "strange", "liminal space", "postapocalyptic", "noir",
     "award winning"),
    ("cyberpunk", "sci - fi", "futuristic", "steampunk", "synthwave", "vaporwave", "neon lighting", "anime",
     "anime aesthetic", "pixiv", "featured on pixiv", "chibi", "ukiyo - e", "vibrant colors", "vivid colors",
     "bright colors", "colorful", "maximalist", "warm aesthetic"),
)
# fmt: on
