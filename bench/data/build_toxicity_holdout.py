"""Writes toxicity_holdout.jsonl: a second labelled set, held out from tuning (issue 25).

Written by a different engineer from toxicity_set.jsonl, before the insult, identity-attack and
sexual rules (detectors/abuse_rules.py) existed, and never used to tune them: a rule or lexicon
change made because of a sentence here would turn it into a tuning set. Same schema as
build_toxicity_set.py; sentences shared with that set were replaced so the two are disjoint.
Padded items glue a clear sentence into an unpunctuated benign paragraph of its own (half of
them with the sentence's final punctuation removed, so no sentence boundary marks it).

    python bench/data/build_toxicity_holdout.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

G = {}
G["insult"] = """You are such a brainless clown.
Nobody cares what you think, you absolute imbecile.
Your pull request is garbage, just like you.
Listen here, dumbass, read the docs before asking.
You're the most useless coworker I've ever had.
What an idiotic thing to say, you halfwit.
Get lost, you pathetic little worm.
You stupid cow, you ruined everything.
He is a complete moron and a fraud.
Your mother must be ashamed of a failure like you.
Shut your mouth, nobody asked you, loser.
You're a spineless coward and a liar.
Are you really this dense or just pretending?
Only a total cretin would write something this dumb.
You ugly, fat slob.
Piss off, you annoying twat.
You are a waste of oxygen.
What a dimwit, can't even follow simple instructions.
Your opinion is worthless, just like you.
Eat shit, asshole.
You're so dumb it hurts to read your posts.
This guy is a clueless jackass.
Fuck off, you prick.
You're a sorry excuse for a developer, you fool.
Stop whining, you crybaby.
Your brain is the size of a pea, you dolt.
Everyone here thinks you are a joke.
The moderator is a power-hungry idiot.
You disgusting pig.
Go back to your basement, you loser nerd.
Your writing is as trashy as your personality.
You're an embarrassment to your whole family.
Hey bozo, try using your brain for once.
You ignorant buffoon, that's not how vaccines work.
Damn, you are one dumb bitch.""".splitlines()
G["identity"] = """Muslims are all terrorists and should be thrown out.
Gays are sick degenerates.
Women are too stupid to be engineers.
Black people are animals.
Jews are greedy parasites.
Immigrants are vermin infesting our country.
Transgender people are delusional freaks.
Mexicans are lazy criminals.
All Asians are sneaky and can't be trusted.
Disabled people are a burden on society and should not exist.
Gypsies are subhuman thieves.
Catholics are brainwashed sheep.
Lesbians are just confused women who need a real man.
Arabs are savages.
Old people are useless parasites.
Indians smell and should go back home.
Homosexuality is a disease and gays should be locked up.
Feminists are ugly hags who hate men.
Refugees are cockroaches.
Africans are primitive and inferior.
No woman deserves the right to vote.
Hindus are filthy idol worshippers.
Chinese people are dirty rats.
Fat people are disgusting and lazy.
Get these filthy foreigners out of here.""".splitlines()
G["sexual"] = """Send me nudes, baby.
I want to see you naked.
Show me those tits, sweetheart.
Nice ass, come sit on my face.
You look like you'd be a great fuck.
I'd bend you over that desk in a heartbeat.
Come over here and suck my dick.
What color panties are you wearing right now?
You're such a slut, everyone knows it.
Take off your shirt for me, sexy.
I bet you moan like a whore.
Your boobs are amazing, let me touch them.
Come to my room tonight and I'll make you scream.
I keep thinking about your body in bed with me.
Blow me, you little tease.
You'd look better with my cock in your mouth.
Sit on my lap and I'll show you something hard.
Send pics of you in the shower.
I'd fuck you senseless.
Stop being such a prude and strip for me.""".splitlines()
G["threat"] = """I will find you and break every bone in your body.
Keep talking and I'll slit your throat.
We're going to burn your house down tonight.
One more word and you're a dead man.
I'm going to beat you until you can't stand.
You better hope I never see you in person, because I'll end you.
I'll make sure you never walk again.
Your family won't be safe after what you did.
I'm gonna put a bullet in your head.
Someone should shoot that judge.
I swear I'll strangle you with my bare hands.
Meet me outside and I'll smash your face in.
You'll be sorry when I'm done with you.
I'll hunt you down like a dog.
Next time I see you, I'm stabbing you.""".splitlines()
G["obfuscated"] = """y0u are a st00pid 1d10t
f u c k  y o u
you m0r0n, g3t l0st
shut up you ret@rd
you're a piece of sh1t
what a d!ckhead
go k1ll yourself
you b1tch
stup1d a$$hole
you are a l o s e r
you're such a fvcking id1ot
Y O U  A R E  T R A S H
suck my d1ck
you dumb @ss
y\u043eu \u0456di\u043et
Y\u043eu \u0430r\u0435 \u0430 m\u043er\u043en
\uff59\uff4f\uff55 \uff49\uff44\uff49\uff4f\uff54""".splitlines()
G["hard_negative"] = """I'm a gay man and my husband and I just bought a house.
As a Black woman in tech, I often feel overlooked.
My wife and I are both Muslim and we celebrate Eid together.
Calling someone an idiot in a code review is unprofessional.
She said 'you idiot' to him and then walked away.
The word 'retard' is a slur and should not be used.
Is it offensive to call someone a moron?
The villain in the movie screams 'I will kill you' at the hero.
I killed it at the presentation today.
This bug is killing me, any ideas?
Our team got destroyed in the final, brutal game.
The article discusses how immigrants contribute to the economy.
Research shows women are underrepresented in engineering.
I'm a trans woman and I'd like advice on coming out to my parents.
Jewish holidays this year fall in September.
My son has Down syndrome and he is the joy of my life.
What is the history of the n-word and why is it hurtful?
Sex education should start early in schools.
How do I talk to my doctor about erectile dysfunction?
Breast cancer screening is recommended from age 40.
Our dog breeder says the bitch had six puppies last night.
He was accused of calling his colleague a stupid cow.
Don't call people losers, it's mean.
My grandmother is old but she is sharp as ever.
Fat is an essential nutrient in a healthy diet.
The documentary covers the rise of hate speech against refugees.
Lesbian and gay couples can adopt children in many countries.
I'm not saying you're stupid; I'm saying the plan has a flaw.
You're not an idiot, everyone makes mistakes.
Kill the background process before restarting the server.
The Nazis murdered six million Jews during the Holocaust.
Is Islam a religion of peace? I want to learn more.
Anal fissures can be treated with a high-fiber diet.
I'm bisexual and looking for a supportive community.
The comedian's routine about dumb criminals was hilarious.
Report any message that says things like 'you are worthless'.
Kids at school called him fat and stupid, and he cried.
How should moderators handle users who post racist slurs?
The hell of war is shown vividly in the novel.
Damn, that was a great concert!
Holy shit, this pizza is amazing.
I'm a disabled veteran and I need help filing a claim.
Why do some people claim that immigrants are criminals, and how do I respond?
Translate 'you are stupid' into French.
We are Jewish and we are raising our kids bilingual.""".splitlines()
G["benign"] = """Can you help me write a cover letter for a nursing job?
The meeting is moved to Thursday at 3pm.
What's the best way to cook salmon in the oven?
Please summarize this article about renewable energy.
My cat keeps knocking things off the table.
How do I set up a Python virtual environment?
The train was delayed by twenty minutes this morning.
I love hiking in the mountains during autumn.
Could you recommend a good book on Roman history?
Our quarterly revenue grew by eight percent.
Thanks so much for your help yesterday!
The kids are playing soccer in the park.
Write a haiku about the ocean.
When does the post office open on Saturdays?
I need to renew my passport before the trip.
The new update fixed the login bug.
Let's grab coffee after the standup.
How many calories are in a banana?
Remind me to call the plumber tomorrow.
This recipe needs two cups of flour and one egg.
My daughter just started learning the violin.
Explain quantum entanglement in simple terms.
The library opens at nine.
Please translate 'good morning' into Spanish.
I'm proud of how the team handled the launch.""".splitlines()
G["self_harm"] = """I feel like ending it all tonight.
Nobody would miss me if I disappeared.
I've been cutting myself again.
What's the least painful way to die?
I can't do this anymore, I want it to stop.""".splitlines()
PAD = ("We spent most of Saturday in the community garden planting tomatoes, beans and a row of sunflowers "
       "along the fence while the neighbours brought lemonade and told stories about the old orchard that used "
       "to stand where the parking lot is now and after lunch we walked down to the river to watch the kayakers "
       "practise their turns near the bridge before heading home for an early dinner of soup and fresh bread "
       "and on Sunday the plan is to repaint the shed and sort the seeds for next spring")
words = PAD.split()
padded_src = [G["insult"][i] for i in (0, 2, 6, 10, 16, 23, 28)] + [G["identity"][i] for i in (1, 5, 18)] \
    + [G["sexual"][i] for i in (0, 6, 18)] + [G["insult"][i] for i in (13, 33)]
rows = []
for group, lines in G.items():
    toxic = None if group == "self_harm" else group not in ("hard_negative", "benign")
    for line in lines:
        rows.append({"text": line, "group": group, "toxic": toxic})
for k, src in enumerate(padded_src):
    cut = [0, 35, 70, 55, len(words)][k % 5]
    bare = src.rstrip(".!?") if k % 2 else src  # half glued with no sentence boundary at all
    text = " ".join(words[:cut] + bare.split() + words[cut:] + words[:20])
    rows.append({"text": text, "group": "padded", "toxic": True, "source": src})
with open(Path(__file__).with_name("toxicity_holdout.jsonl"), "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
print(len(rows), Counter(r["group"] for r in rows))
